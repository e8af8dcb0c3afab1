"""Reading an uploaded video for editing: checks that say what to fix, then frames at 16 fps, 4k+1 of them.

PyAV reads MP4/MOV, WebM/MKV and GIF; animated WebP goes through Pillow, because FFmpeg 8.1's WebP
decoder (in the PyAV wheel) rejects animated files. Rotation metadata (the display matrix phones write)
is applied, so a portrait phone clip is portrait. Frames are resampled to 16 fps by presentation time
(each output instant shows the source frame on screen then), which turns variable frame rates into a
constant one, and the count is trimmed down to 4k+1, the VAE's temporal stride.

Memory stays bounded: one source frame is held at full size at a time, and only the selected output
frames (already cropped and resized by the image rule of ``pipelines.video.plan``) are kept. Every path
that opens a container closes it on the way out, errors included, so no decoder outlives a request.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from pipelines.common.errors import InputTooLargeError, InvalidInputError
from pipelines.edit.config import EditLimits
from pipelines.video.plan import FPS, output_size

MIN_OUTPUT_FRAMES = 5  # one latent frame beyond the first: anything shorter is a picture, not a video
MIN_SIDE = 16
# A container that declares a duration but decodes to less than this share of it was cut short or damaged.
MIN_DECODED_SHARE = 0.9
# Demuxers that read a single picture: such an upload is an image sent as `video`.
IMAGE_DEMUXERS = ("image2", "_pipe", "apng")
SUPPORTED = "MP4, MOV, WebM, MKV, GIF or animated WebP"
FIELD = "video"


@dataclass(frozen=True)
class VideoInfo:
    """What the source is, as displayed (after rotation), and the frames an edit of it will have."""

    container: str  # short name: mp4, mkv, gif, webp
    codec: str
    width: int
    height: int
    rotation: int  # degrees counter-clockwise that were applied
    duration_s: float  # from the decoded timestamps
    source_fps: float  # decoded frames per second of duration
    source_frames: int
    has_audio: bool
    frames: int  # at 16 fps, trimmed to 4k+1
    first_frame: Image.Image = field(repr=False, compare=False)
    last_frame: Image.Image = field(repr=False, compare=False)

    @property
    def suffix(self) -> str:
        """File suffix the upload is stored under (the decoder sniffs content, not names)."""
        return f"source.{self.container}"

    def plan(self) -> dict:
        crop, width, height = output_size(self.width, self.height)
        return {
            "input": {
                "width": self.width,
                "height": self.height,
                "duration_s": round(self.duration_s, 3),
                "fps": round(self.source_fps, 3),
                "frames": self.source_frames,
                "container": self.container,
                "codec": self.codec,
                "rotation": self.rotation,
                "has_audio": self.has_audio,
            },
            "crop": dict(zip(("left", "top", "right", "bottom"), crop, strict=True)),
            "output": {"width": width, "height": height},
            "frames": self.frames,
            "fps": FPS,
            "duration_s": round(self.frames / FPS, 4),
        }


@dataclass
class DecodedVideo:
    info: VideoInfo
    frames: np.ndarray  # uint8 (frames, height, width, 3) at the output size
    start_s: float  # source time of the first frame (where the audio copy starts)


def check_upload_size(size: int, limits: EditLimits) -> None:
    if size > limits.max_input_mb * 1_000_000:
        raise InputTooLargeError(
            f"the video is {size / 1e6:.1f} MB; the limit is {limits.max_input_mb:g} MB (edits.max_input_mb)",
            field=FIELD,
        )
    if size == 0:
        raise InvalidInputError("the video file is empty", field=FIELD)


def inspect_video(source: BinaryIO | bytes, limits: EditLimits) -> VideoInfo:
    """Decode every frame once, keeping none but the first and last: the checks and the plan of an upload."""
    return _read(source, limits, keep=None)[0]


def decode_video(source: BinaryIO | bytes, limits: EditLimits) -> DecodedVideo:
    """The output frames (16 fps, 4k+1, cropped and resized) of a source that passed :func:`inspect_video`."""
    info, frames, start = _read(source, limits, keep=True)
    return DecodedVideo(info=info, frames=frames, start_s=start)


def frames_at_16fps(duration_s: float) -> int:
    """Output instants k/16 s before the end, trimmed down to 4k+1."""
    instants = max(0, math.ceil(duration_s * FPS - 1e-6))
    return 0 if instants < 1 else 1 + 4 * ((instants - 1) // 4)


def _max_frames(limits: EditLimits) -> int:
    return frames_at_16fps(limits.max_input_s)


def _read(source, limits: EditLimits, keep):
    data = source if isinstance(source, (bytes, bytearray)) else None
    stream = io.BytesIO(data) if data is not None else source
    stream.seek(0)
    if stream.read(12)[8:12] == b"WEBP":
        stream.seek(0)
        return _read_webp(stream, limits, keep)
    stream.seek(0)
    try:
        container = av.open(stream, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        raise InvalidInputError(f"the upload is not a video PyAV can read; send {SUPPORTED}", field=FIELD) from None
    with container:
        info, frames, start = _read_container(container, limits, keep)
    return _long_enough(info), frames, start


def _read_container(container, limits: EditLimits, keep):
    format_name = container.format.name
    if any(marker in format_name for marker in IMAGE_DEMUXERS):
        raise InvalidInputError(
            f"the upload is a still image ({format_name.removesuffix('_pipe')}), not a video; images go to "
            "POST /v1/videos",
            field=FIELD,
        )
    if not container.streams.video:
        what = "an audio-only file" if container.streams.audio else "a file without a video stream"
        raise InvalidInputError(f"the upload is {what}; send a video ({SUPPORTED})", field=FIELD)
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise InvalidInputError(
            "the video's codec cannot be decoded here; re-encode it as H.264, HEVC, VP9 or AV1", field=FIELD
        )
    declared = float(container.duration) / av.time_base if container.duration else None
    _check_duration(declared, limits, declared=True)
    stream.thread_type = "AUTO"
    codec = stream.codec_context.name
    short = "gif" if format_name == "gif" else "mkv" if "matroska" in format_name else "mp4"

    def source_frames() -> Iterator[tuple[float, float | None, Callable[[], np.ndarray]]]:
        index = 0
        try:
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else index / float(stream.average_rate or FPS)
                length = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else None
                yield time, length, _converter(frame)
                index += 1
        except av.error.FFmpegError:
            raise InvalidInputError(
                f"the video stream is corrupted: decoding failed after {index} good frames; re-export or re-upload it",
                field=FIELD,
            ) from None

    info, frames, start = _sample(
        source_frames(),
        limits,
        keep,
        container=short,
        codec=codec,
        has_audio=bool(container.streams.audio),
        nominal_fps=float(stream.average_rate) if stream.average_rate else None,
    )
    if declared and short != "gif" and info.duration_s < MIN_DECODED_SHARE * declared:
        raise InvalidInputError(
            f"the video declares {declared:.2f} s but only {info.duration_s:.2f} s decode: it is corrupted or cut "
            "short; re-export or re-upload it",
            field=FIELD,
        )
    return info, frames, start


def _converter(frame) -> Callable[[], np.ndarray]:
    rotation = int(getattr(frame, "rotation", 0) or 0)

    def convert() -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        # ``rotation`` is counter-clockwise degrees to display the frame upright; rot90 turns counter-clockwise.
        turns = (rotation // 90) % 4
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    convert.rotation = rotation  # type: ignore[attr-defined]
    convert.size = (frame.width, frame.height)  # type: ignore[attr-defined]
    return convert


def _read_webp(stream, limits: EditLimits, keep):
    try:
        image = Image.open(stream)
        image.load()
    except (OSError, ValueError):
        raise InvalidInputError(f"the WebP upload cannot be decoded; send {SUPPORTED}", field=FIELD) from None
    with image:
        if getattr(image, "n_frames", 1) < 2:
            raise InvalidInputError(
                "the upload is a still image (webp), not a video; images go to POST /v1/videos", field=FIELD
            )

        def source_frames():
            time = 0.0
            try:
                for index in range(image.n_frames):
                    image.seek(index)
                    rgb = np.asarray(image.convert("RGB"))  # decodes the frame; its duration is known after
                    length = max(float(image.info.get("duration") or 100), 10.0) / 1000.0
                    convert = lambda rgb=rgb: rgb  # noqa: E731 - Pillow decodes on seek, so the frame is ready
                    convert.rotation, convert.size = 0, image.size
                    yield time, length, convert
                    time += length
            except (OSError, ValueError, EOFError):
                raise InvalidInputError("the WebP animation is corrupted part-way; re-export it", field=FIELD) from None

        info, frames, start = _sample(
            source_frames(), limits, keep, container="webp", codec="webp", has_audio=False, nominal_fps=None
        )
    return _long_enough(info), frames, start


def _long_enough(info: VideoInfo) -> VideoInfo:
    if info.frames < MIN_OUTPUT_FRAMES:
        raise InvalidInputError(
            f"the video is {info.duration_s:.2f} s long; an edit needs at least {MIN_OUTPUT_FRAMES} frames at "
            f"{FPS} fps ({MIN_OUTPUT_FRAMES / FPS:.2f} s)",
            field=FIELD,
        )
    return info


def _check_duration(duration_s: float | None, limits: EditLimits, *, declared: bool = False) -> None:
    # Half a frame of slack: a "10 s" clip is often 10.02 s long; it is trimmed to the limit.
    if duration_s is not None and duration_s > limits.max_input_s + 0.5 / FPS + (0.25 if declared else 0.0):
        raise InputTooLargeError(
            f"the video is {duration_s:.2f} s long; the limit is {limits.max_input_s:g} s (edits.max_input_s)",
            field=FIELD,
        )


def _sample(source_frames, limits: EditLimits, keep, *, container, codec, has_audio, nominal_fps):
    """Walk the decoded frames once and pick, for each output instant k/16 s, the frame on screen then."""
    max_frames = _max_frames(limits)
    chosen: list[np.ndarray] = []
    prepare = None
    first_time = previous_time = last_length = None
    previous = None  # converter of the frame on screen
    previous_array = None
    first_image = last_image = None
    count = 0
    next_slot = 0
    size = rotation = None

    def take(convert) -> None:
        nonlocal previous_array
        if keep is None:
            return
        if previous_array is None:  # convert once, however many output instants repeat the frame
            previous_array = prepare(convert())
        chosen.append(previous_array)

    for time, length, convert in source_frames:
        if first_time is None:
            first_time, rotation = time, convert.rotation
            width, height = convert.size
            size = (height, width) if (rotation // 90) % 2 else (width, height)
            _check_frame_size(*size, limits)
            prepare = _preparer(*size)
            first_image = Image.fromarray(convert())
        relative = time - first_time
        if previous_time is not None and time <= previous_time:  # out-of-order or duplicate timestamp
            continue
        _check_duration(relative, limits)
        while previous is not None and next_slot < max_frames and next_slot / FPS < relative:
            take(previous)
            next_slot += 1
        previous, previous_array, previous_time, last_length = convert, None, time, length
        count += 1
    if previous is None:
        raise InvalidInputError("the video has no frames that decode", field=FIELD)
    step = last_length or (1.0 / nominal_fps if nominal_fps else 1.0 / FPS)
    duration = previous_time - first_time + step
    _check_duration(duration, limits)
    while next_slot < max_frames and next_slot / FPS < duration - 1e-6:
        take(previous)
        next_slot += 1
    last_image = Image.fromarray(previous())
    frames = frames_at_16fps(min(duration, limits.max_input_s))
    info = VideoInfo(
        container=container,
        codec=codec,
        width=size[0],
        height=size[1],
        rotation=rotation,
        duration_s=duration,
        source_fps=count / duration,
        source_frames=count,
        has_audio=has_audio,
        frames=frames,
        first_frame=first_image,
        last_frame=last_image,
    )
    stacked = np.stack(chosen[:frames]) if keep is not None else None
    return info, stacked, first_time


def _check_frame_size(width: int, height: int, limits: EditLimits) -> None:
    if width * height > limits.max_input_megapixels * 1_000_000:
        raise InputTooLargeError(
            f"the video's frames are {width}x{height}; the limit is {limits.max_input_megapixels:g} megapixels "
            "(edits.max_input_megapixels)",
            field=FIELD,
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidInputError(
            f"the video is {width}x{height} pixels; each side must be at least {MIN_SIDE} pixels", field=FIELD
        )


def _preparer(width: int, height: int) -> Callable[[np.ndarray], np.ndarray]:
    """Crop and Lanczos-resize one frame by the image rule (the same code as photos)."""
    crop, out_w, out_h = output_size(width, height)

    def prepare(rgb: np.ndarray) -> np.ndarray:
        image = Image.fromarray(rgb)
        if crop != (0, 0, width, height):
            image = image.crop(crop)
        return np.asarray(image.resize((out_w, out_h), Image.Resampling.LANCZOS))

    return prepare
