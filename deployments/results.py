"""Where finished results live: a folder every replica can reach (a shared volume in clusters)."""

from __future__ import annotations

import re
from pathlib import Path

_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")


class ResultFiles:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, job_id: str, extension: str) -> Path:
        if not _SAFE_ID.match(job_id):
            raise ValueError(f"unexpected job id {job_id!r}")
        return self.root / f"{job_id}.{extension}"
