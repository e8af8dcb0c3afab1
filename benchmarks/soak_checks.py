"""After the soak: drain the queue, then check that no job was lost, no tenant saw another's, nothing leaked.

- drain: every tenant cancels its still-queued jobs; running ones are waited for (bounded).
- jobs: every job that got 202 must be final, owned by the tenant that submitted it, and a succeeded one's
  result must download with the right content type and a real file signature. Anything else is LOST.
- isolation: a few cross-tenant reads, downloads, event streams and cancels must be 404 (and change nothing);
  each tenant's listing holds only its own jobs; no key is a 401 with ``WWW-Authenticate``.
- leaks: each tenant can open its whole quota of event streams again; the results folder holds files only
  of known jobs (and no result of an unsuccessful one); the store holds no job the benchmark never saw.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx

FINAL = {"succeeded", "failed", "cancelled"}
SIGNATURES = {"video/mp4": (4, b"ftyp"), "image/png": (0, b"\x89PNG\r\n\x1a\n")}
CONTENT_TYPES = {"video": "video/mp4", "background": "image/png"}


def client_for(url: str, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(60.0, connect=10.0))


async def patient(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response:
    """A request that waits out 429s (bounded): the checks must not fail on the rate limit."""
    for _ in range(30):
        response = await client.request(method, path, **kwargs)
        if response.status_code != 429:
            return response
        await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
    return response


async def listed(client: httpx.AsyncClient, status: str | None = None) -> list[dict]:
    jobs, cursor = [], None
    while True:
        params = {"limit": "100", **({"status": status} if status else {}), **({"cursor": cursor} if cursor else {})}
        page = (await patient(client, "GET", "/v1/jobs", params=params)).raise_for_status().json()
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


async def drain(url: str, keys: dict[str, str], wait_s: float) -> dict:
    """Cancel every tenant's queued jobs, then wait for the running ones to end."""
    started, cancelled = time.monotonic(), Counter()

    async def cancel_queued(tenant: str, key: str) -> None:
        async with client_for(url, key) as client:
            for _ in range(5):  # a job claimed meanwhile is running, no longer queued: it is waited for
                queued = await listed(client, "queued")
                if not queued:
                    return
                for job in queued:
                    response = await patient(client, "POST", f"/v1/jobs/{job['id']}/cancel")
                    if response.status_code == 200:
                        cancelled[tenant] += 1

    await asyncio.gather(*(cancel_queued(t, k) for t, k in keys.items()))
    left: dict[str, int] = {}
    while time.monotonic() - started < wait_s:
        left = {}
        for tenant, key in keys.items():
            async with client_for(url, key) as client:
                unfinished = await listed(client, "running") + await listed(client, "queued")
            if unfinished:
                left[tenant] = len(unfinished)
        if not left:
            break
        await asyncio.sleep(2.0)
    return {
        "cancelled_queued": dict(cancelled),
        "seconds": round(time.monotonic() - started, 1),
        "still_unfinished": left,
    }


async def check_jobs(url: str, admin_key: str, accepted: dict[str, dict]) -> dict:
    """Every accepted job: final, its owner, and (succeeded) a downloadable result. Read with the admin key."""
    outcome: Counter = Counter()
    by_tenant: dict[str, Counter] = {}
    lost: list[dict] = []
    gate = asyncio.Semaphore(8)

    async def check(client: httpx.AsyncClient, job_id: str, expected: dict) -> None:
        async with gate:
            response = await patient(client, "GET", f"/v1/jobs/{job_id}")
            if response.status_code != 200:
                lost.append({"id": job_id, "why": f"GET answered {response.status_code}"})
                return
            job = response.json()
            tally = by_tenant.setdefault(expected["tenant"], Counter())
            if job["owner"] != expected["tenant"]:
                lost.append({"id": job_id, "why": f"owner {job['owner']!r}, submitted by {expected['tenant']!r}"})
                return
            if job["status"] not in FINAL:
                lost.append({"id": job_id, "why": f"still {job['status']} after the drain"})
                return
            if job["status"] == "succeeded":
                why = await download_problem(client, job_id, CONTENT_TYPES[expected["kind"]])
                if why:
                    lost.append({"id": job_id, "why": why})
                    return
            if job["status"] == "failed":
                outcome[f"failed:{(job.get('error') or {}).get('type')}"] += 1
            outcome[job["status"]] += 1
            tally[job["status"]] += 1
            tally[f"{expected['kind']}_{job['status']}"] += 1

    async with client_for(url, admin_key) as client:
        await asyncio.gather(*(check(client, job_id, expected) for job_id, expected in accepted.items()))
    return {"outcome": dict(outcome), "by_tenant": {t: dict(c) for t, c in by_tenant.items()}, "lost": lost}


async def download_problem(client: httpx.AsyncClient, job_id: str, content_type: str) -> str | None:
    response = await patient(client, "GET", f"/v1/jobs/{job_id}/result")
    if response.status_code != 200:
        return f"result answered {response.status_code}"
    if response.headers.get("content-type", "").split(";")[0] != content_type:
        return f"result content type {response.headers.get('content-type')!r}, expected {content_type}"
    offset, magic = SIGNATURES[content_type]
    if response.content[offset : offset + len(magic)] != magic:
        return f"result of {len(response.content)} bytes is not a {content_type} file"
    return None


async def check_isolation(url: str, keys: dict[str, str], accepted: dict[str, dict], per_tenant: int = 4) -> dict:
    """Cross-tenant GET/result/events/cancel must be 404; listings hold only own jobs; no key is 401."""
    failures: list[dict] = []
    tries = 0
    tenants = list(keys)
    for owner in tenants:
        own = [job_id for job_id, job in accepted.items() if job["tenant"] == owner][:per_tenant]
        for other in (t for t in tenants if t != owner):
            async with client_for(url, keys[other]) as client:
                for job_id in own:
                    for method, path in (
                        ("GET", f"/v1/jobs/{job_id}"),
                        ("GET", f"/v1/jobs/{job_id}/result"),
                        ("GET", f"/v1/jobs/{job_id}/events"),
                        ("POST", f"/v1/jobs/{job_id}/cancel"),
                        ("DELETE", f"/v1/jobs/{job_id}"),
                    ):
                        tries += 1
                        response = await patient(client, method, path)
                        if response.status_code != 404:
                            failures.append({"as": other, "owner": owner, "request": f"{method} {path}",
                                             "status": response.status_code})  # fmt: skip
    for tenant, key in keys.items():
        async with client_for(url, key) as client:
            foreign = [job["id"] for job in await listed(client) if job["owner"] != tenant]
        if foreign:
            failures.append({"as": tenant, "request": "GET /v1/jobs", "foreign_jobs": foreign[:10]})
    async with client_for(url, None) as anonymous:
        response = await anonymous.get("/v1/jobs")
        tries += 1
        if response.status_code != 401 or "bearer" not in response.headers.get("www-authenticate", "").lower():
            failures.append({"as": "no key", "request": "GET /v1/jobs", "status": response.status_code})
    return {"cross_tenant_requests": tries, "failures": failures}


async def check_stream_slots(url: str, keys: dict[str, str], slots: int) -> dict:
    """Every tenant opens its whole quota of event streams at once on a fresh job of its own: a slot
    leaked by the soak (a stream the server kept counting after its client left) shows up as a 429 here."""
    results: dict[str, dict] = {}
    extra_jobs: dict[str, dict] = {}
    for tenant, key in keys.items():
        async with client_for(url, key) as client:
            photo = ("photo.png", _tiny_png(), "image/png")
            data = {"background_color": "#204060"}
            submitted = await patient(client, "POST", "/v1/backgrounds", files={"image": photo}, data=data)
            if submitted.status_code != 202:
                results[tenant] = {"error": f"could not submit a job: {submitted.status_code}"}
                continue
            job_id = submitted.json()["id"]
            extra_jobs[job_id] = {"tenant": tenant, "kind": "background"}
            statuses: Counter = Counter()
            async with asyncio.TaskGroup() as group:
                for _ in range(slots):
                    group.create_task(_open_briefly(client, job_id, statuses))
            results[tenant] = dict(statuses)
            # While the job is young (likely unfinished), another tenant's cancel must be a 404 and change nothing.
            other = next(t for t in keys if t != tenant)
            async with client_for(url, keys[other]) as intruder:
                foreign_cancel = (await patient(intruder, "POST", f"/v1/jobs/{job_id}/cancel")).status_code
            after = (await patient(client, "GET", f"/v1/jobs/{job_id}")).json()
            results[tenant]["foreign_cancel"] = foreign_cancel
            results[tenant]["cancel_requested_after"] = after["cancel_requested"]
    leaked = any(s.get("429") for s in results.values())
    intruded = any(s.get("foreign_cancel") != 404 or s.get("cancel_requested_after") for s in results.values())
    return {"per_tenant": results, "leaked": leaked, "foreign_cancel_took_effect": intruded, "jobs": extra_jobs}


async def _open_briefly(client: httpx.AsyncClient, job_id: str, statuses: Counter) -> None:
    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        statuses[str(response.status_code)] += 1
        await asyncio.sleep(0.5)  # all of them open at the same time


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 120, 60)).save(buffer, "PNG")
    return buffer.getvalue()


def check_storage(store_path: Path, results_dir: Path, accepted: dict[str, dict]) -> dict:
    """The store and the results folder against what the benchmark was told (read-only)."""
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, owner, status FROM jobs").fetchall()
    records = {job_id: (owner, status) for job_id, owner, status in rows}
    unseen = sorted(set(records) - set(accepted))
    files: dict[str, list[str]] = {}
    stray: list[str] = []
    for path in results_dir.iterdir():
        if path.name.startswith("."):  # the health check's write probe
            continue
        job_id = path.name.split(".", 1)[0]
        if job_id in records:
            files.setdefault(job_id, []).append(path.name)
        else:
            stray.append(path.name)
    problems: list[str] = []
    for job_id, names in files.items():
        results = [n for n in names if not n.endswith(".input.png") and ".background." not in n]
        status = records[job_id][1]
        if status == "succeeded" and len(results) != 1:
            problems.append(f"{job_id} succeeded with result files {results}")
        if status != "succeeded" and results:
            problems.append(f"{job_id} {status} but keeps {results}")
    return {
        "records": len(records),
        "by_status": dict(Counter(status for _, status in records.values())),
        "records_never_acknowledged": unseen[:20],
        "records_never_acknowledged_count": len(unseen),
        "files": sum(len(n) for n in files.values()),
        "stray_files": stray[:20],
        "stray_file_count": len(stray),
        "file_problems": problems[:20],
        "file_problem_count": len(problems),
    }
