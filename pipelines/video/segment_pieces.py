"""Where the finished segments of a video go while the rest renders.

:class:`SegmentFrames` keeps them in memory (a notebook, the tests). :class:`SegmentPieces` writes each one
to disk as soon as it is finished: its frames as an H.264 piece (encoded once, at the job's quality) and
its last frame as a lossless ``.npy`` (the next segment starts on it, so it must not pass through the
codec). A job that is re-run after its replica died finds the pieces and continues after the last one.
:meth:`SegmentPieces.assemble` then joins the pieces into one MP4 by copying their packets (no decode, no
second encode: milliseconds), so at no point are more than one segment's frames in memory.

A piece counts as finished once its last-frame file exists; both are written beside their final name and
renamed, so a replica that dies mid-write leaves no half piece that would be taken for a whole one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from pipelines.common.files import atomic_path
from pipelines.common.media import DEFAULT_CRF, DEFAULT_PRESET, export_mp4


class SegmentSink(Protocol):
    def finished(self) -> int:
        """How many leading segments are stored (a re-run starts after them)."""

    def last_frame(self) -> np.ndarray:
        """The last kept frame (uint8, (h, w, 3)) of the last stored segment."""

    def add(self, index: int, frames: np.ndarray) -> None:
        """Store segment ``index``'s kept frames (the seam frame already dropped)."""


class SegmentFrames:
    """Segments kept in memory, joined by :meth:`video`."""

    def __init__(self) -> None:
        self.segments: list[np.ndarray] = []

    def finished(self) -> int:
        return len(self.segments)

    def last_frame(self) -> np.ndarray:
        return self.segments[-1][-1]

    def add(self, index: int, frames: np.ndarray) -> None:
        if index != len(self.segments):
            raise ValueError(f"segment {index} arrived after {len(self.segments)} stored ones")
        self.segments.append(frames)

    def video(self) -> np.ndarray:
        return self.segments[0] if len(self.segments) == 1 else np.concatenate(self.segments)


class SegmentPieces:
    """Finished segments of one job as files ``<prefix>.seg-<k>.mp4`` and ``<prefix>.seg-<k>.last.npy``."""

    def __init__(
        self,
        directory: str | os.PathLike,
        prefix: str,
        *,
        fps: int = 16,
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
    ) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.fps, self.crf, self.preset = fps, crf, preset
        self.encode_s = 0.0

    def piece_path(self, index: int) -> Path:
        return self.directory / f"{self.prefix}.seg-{index:03d}.mp4"

    def last_frame_path(self, index: int) -> Path:
        return self.directory / f"{self.prefix}.seg-{index:03d}.last.npy"

    def finished(self) -> int:
        count = 0
        while self.last_frame_path(count).exists() and self.piece_path(count).exists():
            count += 1
        return count

    def last_frame(self) -> np.ndarray:
        return np.load(self.last_frame_path(self.finished() - 1))

    def add(self, index: int, frames: np.ndarray) -> None:
        self.encode_s += export_mp4(frames, self.piece_path(index), fps=self.fps, crf=self.crf, preset=self.preset)
        with atomic_path(self.last_frame_path(index)) as partial, open(partial, "wb") as handle:
            np.save(handle, np.ascontiguousarray(frames[-1]))

    def assemble(self, path: str | os.PathLike, count: int) -> float:
        """Join pieces 0..count-1 into one MP4 at ``path`` (written beside it and renamed); returns seconds."""
        started = time.perf_counter()
        with (
            atomic_path(path) as partial,
            av.open(str(partial), mode="w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            stream, offset, last_dts, extradata = None, 0, None, None
            for index in range(count):
                with av.open(str(self.piece_path(index))) as piece:
                    source = piece.streams.video[0]
                    if stream is None:
                        stream, extradata = out.add_stream_from_template(source), source.codec_context.extradata
                    elif source.codec_context.extradata != extradata:
                        # Same encoder, size and options give the same parameter sets; anything else would
                        # play back garbled after the seam, so refuse rather than write it.
                        raise ValueError(f"piece {index} was encoded with other parameters than piece 0")
                    end = offset
                    for packet in piece.demux(source):
                        if packet.dts is None:  # the demuxer's flush packet
                            continue
                        packet.pts += offset
                        packet.dts += offset
                        if last_dts is not None and packet.dts <= last_dts:
                            raise ValueError(f"piece {index} would not follow piece {index - 1} in decoding order")
                        last_dts = packet.dts
                        end = max(end, packet.pts + packet.duration)
                        packet.stream = stream
                        out.mux(packet)
                    offset = end
        return time.perf_counter() - started

    def remove(self) -> None:
        for index in range(self.finished() + 1):
            self.piece_path(index).unlink(missing_ok=True)
            self.last_frame_path(index).unlink(missing_ok=True)
