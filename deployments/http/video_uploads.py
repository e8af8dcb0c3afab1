"""Reading an uploaded source video strictly, off the event loop (the checks are in ``pipelines.edit``).

The multipart reader has already spooled the upload to a temporary file; its size is checked against
``edits.max_input_mb`` before a byte is decoded, then every frame is decoded once (corrupted streams are
found here, not in a worker) and released. The container is closed whatever happens.
"""

from __future__ import annotations

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from pipelines.edit.config import EditLimits
from pipelines.edit.video_input import VideoInfo, check_upload_size, inspect_video


async def read_video(upload: UploadFile, limits: EditLimits) -> VideoInfo:
    size = upload.size if upload.size is not None else len(await upload.read())
    check_upload_size(size, limits)
    upload.file.seek(0)
    return await run_in_threadpool(inspect_video, upload.file, limits)


async def video_bytes(upload: UploadFile) -> bytes:
    """The upload's bytes, to store beside the job (within ``edits.max_input_mb``, checked by read_video)."""
    upload.file.seek(0)
    return await run_in_threadpool(upload.file.read)
