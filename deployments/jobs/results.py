"""Where finished results live: a folder every replica can reach (a shared volume in clusters)."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.common.files import write_atomically

_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")


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
