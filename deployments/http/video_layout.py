"""Reading a video form's pictures and timing: ``image`` / ``last_image`` / ``images``, ``duration_s``,
``transition_s`` and ``storyboard``, checked in one place for the plan, the video and the batch routes.

Cheap checks come first (counts, the storyboard's JSON, the durations), so a wrong request costs no decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from deployments.http.services import ApiServices
from deployments.http.uploads import read_image
from pipelines.common.errors import InvalidInputError
from pipelines.video.plan import VideoPlan, follower_dict, plan_video
from pipelines.video.request import (
    DEFAULT_TRANSITION_S,
    StoryboardEntry,
    VideoRequest,
    storyboard_total_s,
    validate_layout,
)
from pipelines.video.segments import plan_segments, total_frames

DEFAULT_DURATION_S = 3.0


@dataclass
class VideoLayout:
    image: object | None = None  # decoded PIL images
    last_image: object | None = None
    views: list = field(default_factory=list)
    duration_s: float = DEFAULT_DURATION_S
    transition_s: float = DEFAULT_TRANSITION_S
    storyboard: tuple[StoryboardEntry, ...] = ()

    @property
    def first(self):
        return self.image if self.image is not None else self.views[0]

    def request(self, **params) -> VideoRequest:
        """The typed request (it validates everything once more, as a notebook user's would be)."""
        params["duration_s"] = self.duration_s
        return VideoRequest(
            image=self.image,
            last_image=self.last_image,
            views=tuple(self.views),
            transition_s=self.transition_s,
            storyboard=self.storyboard,
            **params,
        )

    def params(self) -> dict:
        """What the job's params record about the layout (the worker rebuilds the request from them)."""
        out: dict = {"last_image": self.last_image is not None}
        if self.views:
            out.update(views=len(self.views), transition_s=self.transition_s)
        if self.storyboard:
            out["storyboard"] = [{"prompt": e.prompt, "duration_s": e.duration_s} for e in self.storyboard]
        return out


def parse_storyboard(text: str | None, *, views: int, transition_s: float) -> tuple[StoryboardEntry, ...]:
    if text is None:
        return ()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"storyboard is not valid JSON ({exc.msg})", field="storyboard") from None
    except RecursionError:  # thousands of nested brackets: valid JSON, but not a storyboard
        raise InvalidInputError("storyboard is nested too deeply; send a list of objects", field="storyboard") from None
    if not isinstance(data, list) or not data:
        raise InvalidInputError(
            'storyboard must be a non-empty JSON list of {"prompt", "duration_s"} objects', field="storyboard"
        )
    entries = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or set(item) - {"prompt", "duration_s"} or "prompt" not in item:
            raise InvalidInputError(
                f'storyboard[{index}] must be an object with "prompt" and "duration_s" (nothing else)',
                field="storyboard",
            )
        prompt, duration = item["prompt"], item.get("duration_s", transition_s if views else None)
        if not isinstance(prompt, str):
            raise InvalidInputError(f"storyboard[{index}].prompt must be text", field="storyboard")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise InvalidInputError(f"storyboard[{index}].duration_s must be a number of seconds", field="storyboard")
        entries.append(StoryboardEntry(prompt=prompt, duration_s=float(duration)))
    return tuple(entries)


async def read_layout(services: ApiServices, form) -> VideoLayout:
    """The checked, decoded pictures and timing of ``form`` (a VideoPlanForm or one derived from it)."""
    views = list(form.images or [])
    transition = DEFAULT_TRANSITION_S if form.transition_s is None else form.transition_s
    if form.transition_s is not None and not views:
        raise InvalidInputError("transition_s only applies with `images` (multi-view)", field="transition_s")
    storyboard = parse_storyboard(form.storyboard, views=len(views), transition_s=transition)
    if form.duration_s is not None:
        duration = form.duration_s
    elif storyboard:
        duration = storyboard_total_s(storyboard)
    elif views:
        duration = round((len(views) - 1) * transition, 6)
    else:
        duration = DEFAULT_DURATION_S
    limit = services.settings.videos.max_duration_s
    if duration > limit:
        raise InvalidInputError(
            f"duration_s is {duration:g} s; this service renders at most {limit:g} s", field="duration_s"
        )
    validate_layout(
        has_image=form.image is not None,
        has_last_image=form.last_image is not None,
        views=len(views),
        transition_s=transition,
        storyboard=storyboard,
        duration_s=duration,
        max_duration_s=limit,
    )
    layout = VideoLayout(duration_s=duration, transition_s=transition, storyboard=storyboard)
    limits = {"max_bytes": services.max_upload_bytes, "max_pixels": services.max_pixels}
    if form.image is not None:
        layout.image = await read_image(form.image, field="image", **limits)
    if form.last_image is not None:
        layout.last_image = await read_image(form.last_image, field="last_image", **limits)
    for index, upload in enumerate(views):
        try:
            layout.views.append(await read_image(upload, field="images", **limits))
        except InvalidInputError as exc:
            # the message says which view: "images[2]: ..." (counting from 0, in the order sent)
            raise type(exc)(f"images[{index}]: {exc.message}", field="images") from None
    return layout


def plan_dict(layout: VideoLayout) -> tuple[VideoPlan, dict]:
    """The plan endpoint's answer, from the same functions the pipeline renders with."""
    first = layout.first
    plan = plan_video(first.width, first.height, layout.duration_s)
    request = layout.request()
    segments = plan_segments(request)
    out = plan.as_dict()
    out["frames"] = total_frames(segments)
    out["segments"] = [
        {
            "index": s.index,
            "frames": s.frames,
            "kept_frames": s.kept_frames,
            "prompt": s.prompt if layout.storyboard else None,
            "colour_matched": s.colour_match,
        }
        for s in segments
    ]
    if layout.last_image is not None:
        out["last_image"] = follower_dict(layout.last_image.width, layout.last_image.height, plan)
    if layout.views:
        out["views"] = [
            {"input": {"width": v.width, "height": v.height}, "crop": out["crop"], "output": out["output"]}
            if index == 0
            else follower_dict(v.width, v.height, plan)
            for index, v in enumerate(layout.views)
        ]
        out["transition_s"] = layout.transition_s
    return plan, out
