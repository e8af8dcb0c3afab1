"""Where finished results live: a folder every replica can reach (a shared volume in clusters)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from pipelines.common.files import write_atomically

# errno values that mean the results volume itself is unusable (full, read-only, failing), not one request
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


def is_storage_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")
# <id>.input.png, <id>.<attempt>.mp4, ... and the temporary .<id>.<...>.partial of a file being written
_STORED = re.compile(r"^\.?([0-9a-f]{32})\.")


class ResultFiles:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, job_id: str, extension: str) -> Path:
        if not _SAFE_ID.match(job_id):
            raise ValueError(f"unexpected job id {job_id!r}")
        return self.root / f"{job_id}.{extension}"

    def result_path(self, job_id: str, attempt: int, extension: str) -> Path:
        """Where attempt ``attempt`` of a job writes its result. Each attempt has its own file, so a worker
        that lost its claim (and still renders) can neither overwrite nor delete the winner's result."""
        if attempt < 0:
            raise ValueError(f"unexpected attempt {attempt}")
        return self.path_for(job_id, f"{attempt}.{extension}")

    def input_path(self, job_id: str) -> Path:
        """The normalised input image, written by the ingress before the job is queued."""
        return self.path_for(job_id, "input.png")

    def save_input(self, job_id: str, png: bytes) -> Path:
        return write_atomically(self.input_path(job_id), png)

    def load_input(self, job_id: str):
        from PIL import Image

        with Image.open(self.input_path(job_id)) as image:
            return image.convert("RGB")

    def files_of(self, job_id: str) -> list[Path]:
        """Every file of the job: its input, the result of each attempt, and half-written ones."""
        if not _SAFE_ID.match(job_id):
            raise ValueError(f"unexpected job id {job_id!r}")
        return sorted(path for path in self.root.iterdir() if _job_of(path.name) == job_id)

    def delete_files(self, job_id: str) -> int:
        removed = 0
        for path in self.files_of(job_id):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def stored_files(self) -> dict[str, list[Path]]:
        """All files in the folder that belong to some job, by job id (anything else is left alone)."""
        stored: dict[str, list[Path]] = {}
        for path in self.root.iterdir():
            job_id = _job_of(path.name)
            if job_id is not None and path.is_file():
                stored.setdefault(job_id, []).append(path)
        return stored

    def probe_writable(self) -> None:
        """Write, flush to disk and remove a small file: raises OSError when results cannot be stored."""
        write_atomically(self.root / ".write-probe", b"ok")
        (self.root / ".write-probe").unlink(missing_ok=True)


def _job_of(name: str) -> str | None:
    match = _STORED.match(name)
    return match.group(1) if match else None
