"""Decoding an uploaded image off the event loop (the checks themselves are in ``pipelines.common.images``)."""

from __future__ import annotations

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from pipelines.common.images import decode_image


async def read_image(upload: UploadFile, *, max_bytes: int, max_pixels: int, field: str = "image"):
    data = await upload.read()
    return await run_in_threadpool(decode_image, data, field=field, max_bytes=max_bytes, max_pixels=max_pixels)
