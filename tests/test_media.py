import numpy as np
import pytest

from pipelines.common.media import export_mp4, probe_video


def _moving_frames(count: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = [
        np.stack([(x * 2 + 8 * i) % 256, (y * 2) % 256, np.full_like(x, 40 + 10 * i) % 256], -1) for i in range(count)
    ]
    return np.stack(frames).astype(np.uint8)


def test_h264_yuv420p_16fps_decodes_back(tmp_path):
    frames = _moving_frames(17, 96, 128)
    path = tmp_path / "clip.mp4"
    seconds = export_mp4(frames, path, fps=16)
    assert seconds >= 0
    info = probe_video(path)
    assert (info["codec"], info["pix_fmt"], info["fps"]) == ("h264", "yuv420p", 16.0)
    assert (info["width"], info["height"], info["frames"]) == (128, 96, 17)
    # lossy, but close to what went in at crf 18
    assert np.abs(info["pixels"].astype(int) - frames.astype(int)).mean() < 6


def test_faststart_puts_the_index_first(tmp_path):
    path = tmp_path / "clip.mp4"
    export_mp4(_moving_frames(9, 64, 64), path)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_odd_sizes_are_padded_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    export_mp4(_moving_frames(9, 45, 63), path)
    info = probe_video(path)
    assert (info["width"], info["height"], info["frames"]) == (64, 46, 9)


def test_bad_frames_are_refused_and_leave_no_file(tmp_path):
    path = tmp_path / "bad.mp4"
    with pytest.raises(ValueError):
        export_mp4(np.zeros((9, 32, 32, 3), np.float32), path)
    with pytest.raises(ValueError):
        export_mp4(np.zeros((0, 32, 32, 3), np.uint8), path)
    assert list(tmp_path.iterdir()) == []
