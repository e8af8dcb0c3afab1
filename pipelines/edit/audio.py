"""Copying the source's sound into an edited MP4: the edit's span of it, re-encoded as AAC.

The video packets are copied as they are (no second H.264 encode); the audio is decoded from the source,
cut to the span the edit covers (from its first frame, for as long as the edit lasts) and encoded as
AAC, which every MP4 player plays, whatever codec the upload carried (Opus in WebM, MP3, PCM in MOV).
"""

from __future__ import annotations

import os
import time

import av
import numpy as np

from pipelines.common.files import atomic_path

AAC_BITRATE = 128_000


def has_audio(source: str | os.PathLike) -> bool:
    try:
        with av.open(str(source)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError:
        return False


def add_source_audio(
    video: str | os.PathLike, source: str | os.PathLike, *, start_s: float, duration_s: float
) -> float | None:
    """Rewrite ``video`` with ``source``'s first audio track from ``start_s`` for ``duration_s`` seconds.

    Returns the seconds it took, or None when the source has no audio (``video`` is left as it is).
    """
    started = time.perf_counter()
    with av.open(str(source)) as audio_in:
        if not audio_in.streams.audio:
            return None
        audio_stream = audio_in.streams.audio[0]
        with (
            av.open(str(video)) as video_in,
            atomic_path(video) as partial,
            av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            video_out = out.add_stream_from_template(video_in.streams.video[0])
            rate = audio_stream.codec_context.sample_rate or 48000
            audio_out = out.add_stream("aac", rate=rate)
            audio_out.layout = "stereo" if (audio_stream.codec_context.channels or 1) > 1 else "mono"
            audio_out.bit_rate = AAC_BITRATE
            for packet in video_in.demux(video_in.streams.video[0]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = video_out
                out.mux(packet)
            _copy_audio_span(audio_in, audio_stream, out, audio_out, start_s, duration_s)
    return time.perf_counter() - started


def _copy_audio_span(audio_in, audio_stream, out, audio_out, start_s: float, duration_s: float) -> None:
    rate = audio_out.rate
    resampler = av.AudioResampler(format="fltp", layout=audio_out.layout.name, rate=rate)
    first = round(start_s * rate)
    wanted = round(duration_s * rate)
    written = 0
    for frame in audio_in.decode(audio_stream):
        if frame.time is None:
            continue
        for piece in resampler.resample(frame):
            begin = round(piece.time * rate) if piece.time is not None else first + written
            samples = piece.to_ndarray()  # (channels, n) float32
            # keep the part of this piece inside [first + written, first + wanted)
            skip = max(0, first + written - begin)
            keep = min(samples.shape[1] - skip, wanted - written)
            if keep <= 0:
                continue
            chunk = np.ascontiguousarray(samples[:, skip : skip + keep])
            out_frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=audio_out.layout.name)
            out_frame.sample_rate, out_frame.pts = rate, written
            for packet in audio_out.encode(out_frame):
                out.mux(packet)
            written += keep
        if written >= wanted:
            break
    for packet in audio_out.encode(None):
        out.mux(packet)
