"""Per-stage wall-clock timing shared by the pipelines."""

from __future__ import annotations

import time


class StageClock:
    """Wall time between laps, synchronising the GPU so each stage is charged its own work."""

    def __init__(self, device) -> None:
        self.device = device
        self.last = time.perf_counter()

    def lap(self) -> float:
        if self.device.type == "cuda":
            import torch  # only when a GPU is in use: this module must stay importable without torch

            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed
