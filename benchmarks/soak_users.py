"""One simulated user of the soak benchmark: a loop of API calls with think time, under one tenant's key.

Each turn picks an action by weight: the resolution plan, the mask preview, a job's status, the job list,
a few seconds of a job's event stream, a video or background submission (cheap ones: 0.5 s and 4 steps; a
plain colour background, no SDXL), sometimes the same submission again with its ``Idempotency-Key``, or a
cancel of one of its own unfinished jobs. A ``429`` is honoured with its ``Retry-After``, capped so that a
user keeps calling; the cap is in the report.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid

import httpx
import numpy as np
from PIL import Image

from benchmarks.soak_stats import JobLedger, RequestStats

FINAL = {"succeeded", "failed", "cancelled"}
MAX_BACKOFF_S = 5.0
ACTIONS = {  # action -> weight
    "plan": 14,
    "mask": 10,
    "status": 24,
    "list": 10,
    "events": 8,
    "video": 14,
    "background": 10,
    "cancel": 5,
}
REPLAY_SHARE = 0.15  # of accepted submissions, sent again with the same key (must answer 200, same job)


def photo_png(seed: int, width: int = 192, height: int = 128) -> bytes:
    """A small photo-like PNG: a lit gradient with a bright round 'subject' in the middle and some noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xs / width * 180, ys / height * 120 + 40, np.full_like(xs, 90)], axis=-1)
    inside = ((xs - width / 2) / (width / 5)) ** 2 + ((ys - height / 2) / (height / 3)) ** 2 < 1
    base[inside] = [235, 200, 170]
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class SimulatedUser:
    def __init__(
        self,
        number: int,
        tenant: str,
        key: str,
        base_url: str,
        stats: RequestStats,
        ledger: JobLedger,
        stop_at: float,
        think_s: tuple[float, float],
    ) -> None:
        self.number, self.tenant, self.key, self.base_url = number, tenant, key, base_url
        self.stats, self.ledger, self.stop_at, self.think_s = stats, ledger, stop_at, think_s
        self.rng = random.Random(number)
        self.images = [photo_png(number * 10 + i) for i in range(2)]
        self.jobs: dict[str, str] = {}  # own job id -> last status seen
        self.backoff_s = 0.0

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
        timeout = httpx.Timeout(60.0, connect=10.0)
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, limits=limits) as client:
            self.client = client
            await asyncio.sleep(self.rng.uniform(0, self.think_s[1]))  # users do not all start at once
            names, weights = list(ACTIONS), list(ACTIONS.values())
            while time.monotonic() < self.stop_at:
                self.backoff_s = 0.0
                action = self.rng.choices(names, weights)[0]
                await getattr(self, f"do_{action}")()
                await asyncio.sleep(self.rng.uniform(*self.think_s) + self.backoff_s)

    # ------------------------------------------------------------------ one request
    async def call(self, method: str, route: str, path: str, **kwargs) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.stats.record(route, f"error:{type(exc).__name__}", time.perf_counter() - started)
            return None
        self.stats.record(route, response.status_code, time.perf_counter() - started, response)
        self._honour_429(response)
        return response

    def _honour_429(self, response: httpx.Response) -> None:
        if response.status_code == 429:
            try:
                wait = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            self.backoff_s = min(max(wait, 0.0), MAX_BACKOFF_S)

    def _image(self) -> tuple[str, bytes, str]:
        return ("photo.png", self.rng.choice(self.images), "image/png")

    def _own_job(self, unfinished: bool) -> str | None:
        ids = [i for i, status in self.jobs.items() if status not in FINAL] if unfinished else list(self.jobs)
        return self.rng.choice(ids) if ids else None

    # ------------------------------------------------------------------ the actions
    async def do_plan(self) -> None:
        duration = self.rng.choice(["0.5", "1", "3", "5"])
        await self.call("POST", "POST /v1/videos/plan", "/v1/videos/plan", files={"image": self._image()},
                        data={"duration_s": duration})  # fmt: skip

    async def do_mask(self) -> None:
        data = {"composition": self.rng.choice(["center", "full"]), "focus": "person", "feather_px": "4"}
        await self.call("POST", "POST /v1/backgrounds/mask", "/v1/backgrounds/mask", files={"image": self._image()},
                        data=data)  # fmt: skip

    async def do_status(self) -> None:
        job_id = self._own_job(unfinished=True) or self._own_job(unfinished=False)
        if job_id is None:
            return await self.do_list()
        response = await self.call("GET", "GET /v1/jobs/{id}", f"/v1/jobs/{job_id}")
        if response is not None and response.status_code == 200:
            self.jobs[job_id] = response.json()["status"]

    async def do_list(self) -> None:
        params = {"limit": "20"}
        status = self.rng.choice([None, "queued", "running", "succeeded"])
        if status:
            params["status"] = status
        response = await self.call("GET", "GET /v1/jobs", "/v1/jobs", params=params)
        if response is not None and response.status_code == 200:
            for job in response.json()["jobs"]:
                if job["owner"] != self.tenant:
                    self.ledger.note("foreign job in listing", tenant=self.tenant, job_id=job["id"])
                if job["id"] in self.jobs:
                    self.jobs[job["id"]] = job["status"]

    async def do_events(self) -> None:
        job_id = self._own_job(unfinished=True) or self._own_job(unfinished=False)
        if job_id is None:
            return await self.do_plan()
        route, read_for_s = "GET /v1/jobs/{id}/events", self.rng.uniform(2.0, 5.0)
        started = time.perf_counter()
        try:
            async with self.client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                self.stats.record(route, response.status_code, time.perf_counter() - started)  # time to headers
                self._honour_429(response)
                if response.status_code != 200:
                    await response.aread()
                    return
                try:
                    async with asyncio.timeout(read_for_s):
                        async for line in response.aiter_lines():
                            if line.startswith("event: ") and line[7:] in FINAL:
                                self.jobs[job_id] = line[7:]
                except TimeoutError:
                    pass  # read for a few seconds, then hang up like a closed browser tab
        except httpx.HTTPError as exc:
            self.stats.record(route, f"error:{type(exc).__name__}", time.perf_counter() - started)

    async def do_video(self) -> None:
        data = {"duration_s": "0.5", "steps": "4", "seed": str(self.rng.randrange(1 << 30)), "prompt": "soak test"}
        await self._submit("video", "POST /v1/videos", "/v1/videos", data)

    async def do_background(self) -> None:
        color = f"#{self.rng.randrange(1 << 24):06x}"
        data = {"background_color": color, "composition": self.rng.choice(["center", "full"])}
        await self._submit("background", "POST /v1/backgrounds", "/v1/backgrounds", data)

    async def _submit(self, kind: str, route: str, path: str, data: dict) -> None:
        files = {"image": self._image()}
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        self.ledger.submitted[self.tenant] += 1
        response = await self.call("POST", route, path, files=files, data=data, headers=headers)
        if response is None:
            return
        if response.status_code == 429:
            self.ledger.rejected_429[self.tenant] += 1
            return
        if response.status_code != 202:
            if response.status_code == 200:
                self.ledger.note("fresh key answered as a replay", route=route)
            return
        job = response.json()
        if job["owner"] != self.tenant:
            self.ledger.note("job owned by someone else", tenant=self.tenant, job_id=job["id"], owner=job["owner"])
        self.ledger.accept(job["id"], self.tenant, kind)
        self.jobs[job["id"]] = job["status"]
        if self.rng.random() < REPLAY_SHARE:
            await self._replay(route, path, files, data, headers, job["id"])

    async def _replay(self, route: str, path: str, files: dict, data: dict, headers: dict, job_id: str) -> None:
        again = await self.call("POST", route, path, files=files, data=data, headers=headers)
        if again is None:
            outcome = "transport error"
        elif again.status_code == 200 and again.json()["id"] == job_id:
            outcome = "200 same job"
        elif again.status_code == 429:
            outcome = "429"
        else:
            outcome = f"{again.status_code} other"
            self.ledger.note("replay answered differently", job_id=job_id, status=again.status_code)
        self.ledger.replays[outcome] += 1

    async def do_cancel(self) -> None:
        job_id = self._own_job(unfinished=True)
        if job_id is None:
            return await self.do_status()
        response = await self.call("POST", "POST /v1/jobs/{id}/cancel", f"/v1/jobs/{job_id}/cancel")
        if response is not None and response.status_code == 200:
            self.jobs[job_id] = response.json()["status"]
        elif response is not None and response.status_code == 409:
            self.jobs[job_id] = "succeeded"
