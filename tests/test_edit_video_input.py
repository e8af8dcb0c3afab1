"""Decoding uploads for editing: six kinds of source video, the audio copy, and every bad input's message."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipelines.common.errors import InputTooLargeError, InvalidInputError
from pipelines.common.media import export_mp4
from pipelines.edit.audio import add_source_audio
from pipelines.edit.config import EditLimits
from pipelines.edit.video_input import check_upload_size, decode_video, frames_at_16fps, inspect_video
from tests import edit_videos as clips

LIMITS = EditLimits()
VFR_TIMES = [0, 0.03, 0.1, 0.12, 0.3, 0.35, 0.5, 0.52, 0.7, 0.8, 0.95, 1.0, 1.2]


def _sources(folder):
    return {
        # name: (path, displayed size, output size, frames at 16 fps, has audio)
        "landscape mp4": (
            clips.encode_video(folder / "a.mp4", width=128, height=72, frames=40, fps=25),
            (128, 72),
            (832, 480),
            25,  # 1.6 s -> 26 instants -> 25 (4k+1)
            False,
        ),
        "rotated phone mp4": (
            clips.encode_video(folder / "b.mp4", width=96, height=64, frames=30, fps=30, rotation=90),
            (64, 96),
            (560, 832),
            13,
            False,
        ),
        "vfr webm": (
            clips.encode_video(folder / "c.webm", fmt="webm", codec="libvpx-vp9", times_s=VFR_TIMES),
            (96, 64),
            (832, 560),
            17,  # 1.2 s + the last frame's 1/24 s -> 20 instants -> 17
            False,
        ),
        "gif": (clips.encode_gif(folder / "d.gif", frames=20, frame_ms=100), (80, 60), (832, 624), 29, False),
        "odd-size mkv": (
            clips.encode_video(
                folder / "e.mkv", fmt="matroska", width=97, height=61, frames=20, fps=12, pix_fmt="yuv444p"
            ),
            (97, 61),
            (832, 528),
            25,
            False,
        ),
        "mp4 with audio": (
            clips.encode_video(folder / "f.mp4", frames=32, fps=16, audio_s=2.0),
            (96, 64),
            (832, 560),
            29,
            True,
        ),
        "animated webp": (
            clips.encode_webp(folder / "g.webp", frames=12, frame_ms=80),
            (80, 60),
            (832, 624),
            13,
            False,
        ),
    }


def test_six_kinds_of_source_plan_and_decode_alike(tmp_path):
    for name, (path, size, out_size, frames, audio) in _sources(tmp_path).items():
        info = inspect_video(path.read_bytes(), LIMITS)
        plan = info.plan()
        assert (info.width, info.height) == size, name
        assert (plan["output"]["width"], plan["output"]["height"]) == out_size, name
        assert plan["frames"] == frames and (frames - 1) % 4 == 0, name
        assert plan["fps"] == 16 and info.has_audio is audio, name
        decoded = decode_video(path.read_bytes(), LIMITS)
        assert decoded.frames.shape == (frames, out_size[1], out_size[0], 3), name


def test_rotation_is_applied_so_the_square_moves_down_the_portrait_frame(tmp_path):
    path = clips.encode_video(tmp_path / "r.mp4", width=96, height=64, frames=32, fps=16, rotation=90)
    frames = decode_video(path.read_bytes(), LIMITS).frames
    assert frames.shape[1] > frames.shape[2]  # portrait
    # Rotating 90° counter-clockwise turns the source's left-to-right motion into bottom-to-top motion.
    rows = [np.nonzero((frame[..., 0] > 200).any(axis=1))[0].mean() for frame in (frames[0], frames[-1])]
    assert rows[1] < rows[0] - 100


def test_variable_frame_rate_is_resampled_by_presentation_time(tmp_path):
    path = clips.encode_video(tmp_path / "v.webm", fmt="webm", codec="libvpx-vp9", times_s=VFR_TIMES)
    frames = decode_video(path.read_bytes(), LIMITS).frames
    # Output instant k/16 s shows the last source frame presented by then: source frame 4 (0.3 s) covers 5-5.
    positions = [np.nonzero((f[..., 0] > 200).any(axis=0))[0].min() for f in frames]
    expected_source = [max(i for i, t in enumerate(VFR_TIMES) if t <= k / 16 + 1e-9) for k in range(len(frames))]
    assert np.all(np.diff(positions) >= 0)  # never backwards in time
    assert len(set(expected_source)) == len(set(positions))


def test_frames_trim_to_4k_plus_1():
    assert [frames_at_16fps(s) for s in (0.25, 0.3125, 1.0, 2.0, 10.0)] == [1, 5, 13, 29, 157]


def test_audio_is_copied_into_the_result_and_decodes_back(tmp_path):
    source = clips.encode_video(tmp_path / "s.mp4", frames=32, fps=16, audio_s=2.0)
    decoded = decode_video(source.read_bytes(), LIMITS)
    out = tmp_path / "out.mp4"
    export_mp4(decoded.frames, out, fps=16)
    assert add_source_audio(out, source, start_s=decoded.start_s, duration_s=len(decoded.frames) / 16) is not None
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(decoded.frames)
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        samples = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(stream)])
    rate = stream.rate
    assert abs(len(samples) / rate - len(decoded.frames) / 16) < 0.05
    spectrum = np.abs(np.fft.rfft(samples[rate // 10 : rate]))
    assert abs(np.argmax(spectrum) * rate / len(samples[rate // 10 : rate]) - 440) < 5


@pytest.mark.parametrize(
    ("name", "make", "error", "words"),
    [
        ("not a video", lambda: b"hello world" * 100, InvalidInputError, "not a video"),
        ("audio only", clips.audio_only_bytes, InvalidInputError, "audio-only"),
        ("image as video", clips.png_bytes, InvalidInputError, "still image"),
        ("zero frames", lambda: clips.video_bytes(frames=3, fps=16), InvalidInputError, "at least 5 frames"),
        (
            "corrupted mp4",
            lambda: clips.corrupted_half_way(clips.video_bytes(frames=48)),
            InvalidInputError,
            "corrupted",
        ),
        (
            "corrupted mkv",
            lambda: clips.corrupted_half_way(clips.video_bytes(fmt="matroska", frames=48)),
            InvalidInputError,
            "corrupted",
        ),
        (
            "too long",
            lambda: clips.video_bytes(frames=176, fps=16, width=32, height=32),
            InputTooLargeError,
            "max_input_s",
        ),
        ("codec", lambda: clips.unknown_codec_mkv(clips.video_bytes(fmt="matroska")), InvalidInputError, "codec"),
    ],
)
def test_bad_inputs_say_what_is_wrong(name, make, error, words):
    with pytest.raises(error) as raised:
        inspect_video(make(), LIMITS)
    assert words in raised.value.message and raised.value.field == "video", name


def test_frame_size_limit_names_the_setting():
    with pytest.raises(InputTooLargeError, match="max_input_megapixels"):
        inspect_video(clips.video_bytes(width=320, height=240), EditLimits(max_input_megapixels=0.05))


def test_upload_size_limit_names_the_setting():
    check_upload_size(1_000_000, EditLimits(max_input_mb=1))
    with pytest.raises(InputTooLargeError, match=r"edits\.max_input_mb"):
        check_upload_size(1_000_001, EditLimits(max_input_mb=1))
