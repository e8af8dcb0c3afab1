"""The commands that send a photo: ``video``, ``background``, ``plan`` and ``mask``.

What can be checked without the server is refused here first, by Typer: files that do not exist,
numbers out of the bounds of ``vividflow.client.options``, unknown choices (exit 2 before any request).
Template and scene ids are the server's to check; its 400 exits with 2 as well. Options left out are
not sent, so the server's defaults apply; ``--help`` names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vividflow.cli import video_options as vo
from vividflow.cli.follow import finish, follow
from vividflow.cli.state import CliState, JsonFlag, emit_json, reported_errors, state_of
from vividflow.cli.video_options import SeedOption, prompt_limit
from vividflow.client import options as limits
from vividflow.client.options import Composition, Fit, Focus, Position

ImageArg = Annotated[
    Path,
    typer.Argument(
        exists=True,
        dir_okay=False,
        readable=True,
        metavar="PHOTO",
        show_default=False,
        help="The photo (PNG, JPEG, WebP…).",
    ),
]
NoWaitFlag = Annotated[bool, typer.Option("--no-wait", help="Print the queued job and exit; do not wait for it.")]


CompositionOption = Annotated[
    Composition | None, typer.Option(show_default=False, help="Which part stays in front. \\[default: center]")
]
FocusOption = Annotated[
    Focus | None, typer.Option(show_default=False, help="`scene` keeps props touching the subject. \\[default: person]")
]
FeatherOption = Annotated[
    int | None,
    typer.Option(
        "--feather",
        min=limits.FEATHER_PX.min,
        max=limits.FEATHER_PX.max,
        show_default=False,
        help="Soften the matte's rim, in pixels. \\[default: 0]",
    ),
]


def _output(output: Path | None, image: Path, suffix: str) -> Path:
    """The file to write: ``--output``, else ``<photo name><suffix>`` here; its folder must exist."""
    target = output if output is not None else Path(image.stem + suffix)
    folder = target if target.is_dir() else target.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"the folder {folder} does not exist", param_hint="'--output' / '-o'")
    return target


def video(
    ctx: typer.Context,
    image: ImageArg,
    duration: vo.DurationOption = None,
    prompt: vo.PromptOption = None,
    negative_prompt: vo.NegativePromptOption = None,
    template: vo.TemplateOption = None,
    steps: vo.StepsOption = None,
    guidance: vo.GuidanceOption = None,
    guidance_2: vo.Guidance2Option = None,
    seed: SeedOption = None,
    expand_prompt: vo.ExpandPromptFlag = False,
    views: vo.ViewsOption = None,
    last_image: vo.LastImageOption = None,
    transition: vo.TransitionOption = None,
    storyboard: vo.StoryboardOption = None,
    lora: vo.LoraOption = None,
    lora_strength: vo.LoraStrengthOption = None,
    webhook_url: vo.WebhookOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", show_default=False, help="Where to save the MP4. \\[default: <photo name>.mp4]"),
    ] = None,
    no_wait: NoWaitFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Turn a photo into a video: submit, show progress, save the MP4. Ctrl-C cancels the job.

    With --images it moves from view to view; with --last-image it ends on that picture; with --storyboard
    each stretch has its own prompt."""
    state = state_of(ctx)
    target = _output(output, image, ".mp4")
    first, pictures = vo.layout(image, views, last_image, transition, storyboard)
    with reported_errors(state, json_output), state.client() as client:
        job = client.submit_video(
            first, duration_s=duration, prompt=prompt, negative_prompt=negative_prompt, template_id=template,
            steps=steps, guidance_scale=guidance, guidance_scale_2=guidance_2, seed=seed,
            expand_prompt=True if expand_prompt else None, lora=lora, lora_strength=lora_strength,
            webhook_url=webhook_url, **pictures,
        )  # fmt: skip
        if no_wait:
            queued(state, job.raw, json_output)
            return
        finish(client, follow(client, job, state, json_output), target, state, json_output)


def background(
    ctx: typer.Context,
    image: ImageArg,
    scene: Annotated[str | None, typer.Option("--scene", "-s", help="A scene id (vividflow templates scenes).")] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", callback=prompt_limit, help="The new background; extends the scene's."),
    ] = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", "-n", callback=prompt_limit, help="Replaces the scene's.")
    ] = None,
    background_image: Annotated[
        Path | None,
        typer.Option(
            "--background-image",
            "-b",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
            help="Your own background picture instead of a scene or prompt (no SDXL runs).",
        ),
    ] = None,
    background_color: Annotated[
        str | None,
        typer.Option(
            "--background-color",
            show_default=False,
            help="#rgb or #rrggbb: a plain background, or the letterbox of --fit contain. \\[default: black]",
        ),
    ] = None,
    fit: Annotated[
        Fit | None,
        typer.Option(show_default=False, help="How --background-image fills the frame. \\[default: cover]"),
    ] = None,
    position: Annotated[
        Position | None,
        typer.Option(show_default=False, help="The part of --background-image kept or anchored. \\[default: center]"),
    ] = None,
    cutout: Annotated[
        bool,
        typer.Option("--cutout", help="Save the subject alone as an RGBA PNG (straight alpha); no background."),
    ] = False,
    composition: CompositionOption = None,
    focus: FocusOption = None,
    feather: FeatherOption = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=limits.BACKGROUND_STEPS.min,
            max=limits.BACKGROUND_STEPS.max,
            show_default=False,
            help="SDXL steps (generated backgrounds). \\[default: 25]",
        ),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            min=limits.BACKGROUND_GUIDANCE.min,
            max=limits.BACKGROUND_GUIDANCE.max,
            show_default=False,
            help="\\[default: the scene's, else 7.5]",
        ),
    ] = None,
    seed: SeedOption = None,
    enrich: Annotated[
        bool | None,
        typer.Option(
            "--enrich/--no-enrich",
            show_default=False,
            help="Let the image analysis add light and atmosphere. \\[default: enrich]",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            show_default=False,
            help="Where to save the PNG. \\[default: <photo name>_background.png, or _cutout.png]",
        ),
    ] = None,
    no_wait: NoWaitFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Replace a photo's background, keeping the subject: with your own picture or colour, a scene and/or a
    prompt (SDXL), or none at all (--cutout). Which combinations are allowed is the server's to judge."""
    state = state_of(ctx)
    if not (scene or (prompt or "").strip() or background_image or background_color or cutout):
        raise typer.BadParameter(
            "give --background-image, --background-color, --scene and/or --prompt, or --cutout",
            param_hint="'--background-image' / '--scene' / '--prompt'",
        )
    target = _output(output, image, "_cutout.png" if cutout else "_background.png")
    with reported_errors(state, json_output), state.client() as client:
        job = client.submit_background(
            image, scene_id=scene, prompt=prompt, negative_prompt=negative_prompt, background_image=background_image,
            background_color=background_color, fit=fit, position=position, output="cutout" if cutout else None,
            composition=composition, focus=focus, feather_px=feather, steps=steps, guidance_scale=guidance, seed=seed,
            enrich_prompt=enrich,
        )  # fmt: skip
        if no_wait:
            queued(state, job.raw, json_output)
            return
        finish(client, follow(client, job, state, json_output), target, state, json_output)


def plan(
    ctx: typer.Context,
    image: ImageArg,
    duration: vo.DurationOption = None,
    views: vo.ViewsOption = None,
    last_image: vo.LastImageOption = None,
    transition: vo.TransitionOption = None,
    storyboard: vo.StoryboardOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Preview the size, frames and segments a video of this photo would have (nothing is rendered)."""
    state = state_of(ctx)
    first, pictures = vo.layout(image, views, last_image, transition, storyboard)
    with reported_errors(state, json_output), state.client() as client:
        result = client.plan_video(first, duration, **pictures)
    if json_output:
        emit_json(result)
        return
    source, out, crop = result["input"], result["output"], result["crop"]
    cropped = (crop["left"], crop["top"], crop["right"], crop["bottom"]) != (0, 0, source["width"], source["height"])
    segments = result.get("segments") or []
    state.out.print(
        f"{source['width']}×{source['height']} → {out['width']}×{out['height']}"
        + (f" (centre crop {crop['right'] - crop['left']}×{crop['bottom'] - crop['top']})" if cropped else "")
        + f", {result['frames']} frames at {result['fps']} fps ({result['duration_s']:g} s)"
        + (f", {len(segments)} segments" if len(segments) > 1 else "")
        + (f", {len(result['views'] or [])} views" if result.get("views") else "")
    )


def mask(
    ctx: typer.Context,
    image: ImageArg,
    composition: CompositionOption = None,
    focus: FocusOption = None,
    feather: FeatherOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", show_default=False, help="Where to save the PNG. \\[default: <photo name>_mask.png]"
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Save the subject mask a background job would use (white = kept) and say how it was made."""
    state = state_of(ctx)
    target = _output(output, image, "_mask.png")
    if target.is_dir():
        target = target / f"{image.stem}_mask.png"
    with reported_errors(state, json_output), state.client() as client:
        preview = client.preview_mask(image, composition=composition, focus=focus, feather_px=feather)
    target.write_bytes(preview.png)
    if json_output:
        emit_json(
            {"output": str(target), "stage": preview.stage, "status": preview.status, "coverage": preview.coverage}
        )
        return
    coverage = f"{preview.coverage:.0%} kept" if preview.coverage is not None else "coverage unknown"
    state.out.print(f"[green]saved[/green] {escape(str(target))}  ({preview.stage} mask, {preview.status}, {coverage})")


def queued(state: CliState, job: dict[str, Any], json_output: bool) -> None:
    if json_output:
        emit_json({"job": job, "output": None})
    else:
        state.out.print(f"queued {job['kind']} job {job['id']}; follow it with: vividflow jobs show {job['id']}")
