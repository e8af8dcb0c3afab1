"""The bad-input corpus (tests/bad_inputs/cases.yaml): every hostile request gets the right 4xx, the one error
body, no traceback, and leaves no job record and no file behind; the few that are valid are accepted.

The app is every feature deployed in process with stand-ins that never render and no worker (see
tests/bad_inputs/in_process_app.py), with API keys on. Most cases go through the TestClient; those about
bodies that arrive slowly, in chunks or not at all go over a real socket to uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.bad_inputs.case_requests import CASES_FILE, Case, build_request, load_cases, send_raw
from tests.bad_inputs.in_process_app import KEYS, LiveServer, corpus_app

BASES, CASES = load_cases()
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
TRACEBACK_MARKERS = ("Traceback", 'File "', '.py", line')
CORPUS_DIR = Path(__file__).parent / "bad_inputs"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with corpus_app(tmp_path_factory.mktemp("corpus")) as harness, LiveServer(harness.app) as live:
        own = _submit(harness, KEYS["corpus"])
        other = _submit(harness, KEYS["other"])
        other_batch = _submit(harness, KEYS["other"], "/v1/batches", variations="1")
        placeholders = {
            "other_batch": other_batch,
            "own_job": own,
            "other_job": other,
            "own_job_upper": own.upper(),
            "own_job_31": own[:31],
            "own_job_33": own + "0",
        }
        yield SimpleNamespace(harness=harness, live=live, placeholders=placeholders)


def _submit(harness, key: str, path: str = "/v1/videos", **fields) -> str:
    """A queued job (or batch) of the tenant with this key, for the cases about ids."""
    from tests.bad_inputs.hostile_files import build_file

    data, filename, content_type = build_file("valid_png")
    response = harness.client.post(
        path,
        files={"image": (filename, data, content_type)},
        data={"duration_s": "1", "seed": "1", **fields},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _open_temp_files() -> int:
    """Files this process holds open that are already unlinked (spooled uploads): a leaked upload shows here."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").endswith("(deleted)"):
                count += 1
        except OSError:
            continue
    return count


def _send(app, case: Case, request):
    transport, raw = case.transport, case.raw
    if transport == "asgi":
        response = app.harness.client.request(
            request.method, request.target(), content=request.body, headers=request.headers
        )
        return response.status_code, response.headers, response.content
    if transport == "chunked":
        size = raw.get("chunk_bytes", 65536)
        pieces = (request.body[at : at + size] for at in range(0, len(request.body), size))
        response = app.harness.client.request(request.method, request.target(), content=pieces, headers=request.headers)
        return response.status_code, response.headers, response.content
    mode = {"live": "length", "live_slow": "length", "live_chunked": "chunked", "live_declared": "declared",
            "live_disconnect": "disconnect"}[transport]  # fmt: skip
    answer = send_raw(
        request,
        app.live.host,
        app.live.port,
        mode=mode,
        chunk_bytes=raw.get("chunk_bytes", 65536),
        pause_s=raw.get("pause_s", 0.0),
        send_bytes=raw.get("send_bytes"),
    )
    if answer is None:
        return None, {}, b""
    if transport == "live_chunked" and raw.get("send_bytes"):
        # refused as the body arrived, not after reading it whole
        assert answer.bytes_sent < raw["send_bytes"] < len(request.body), (answer.bytes_sent, len(request.body))
    return answer.status, answer.headers, answer.body


def _wait_until_settled(harness, jobs_before, files_before, temp_before, timeout_s: float = 5.0):
    """A disconnected request is still being torn down in the server's thread: give it a moment."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (harness.job_ids(), harness.files()) == (jobs_before, files_before) and _open_temp_files() <= temp_before:
            return
        time.sleep(0.05)


def _params():
    for case in CASES:
        marks = [pytest.mark.slow] if case.raw.get("slow") else []
        if case.raw.get("known_bug"):  # reported, not yet fixed; strict, so the fix makes this fail until removed
            marks.append(pytest.mark.xfail(reason=case.raw["known_bug"], strict=True))
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", _params())
def test_bad_input(app, case: Case):
    harness = app.harness
    request = build_request(case, BASES, app.placeholders, {"user": KEYS["corpus"], "admin": KEYS["ops"]})
    jobs_before, files_before, temp_before = harness.job_ids(), harness.files(), _open_temp_files()

    status, headers, body = _send(app, case, request)

    text = body.decode("utf-8", "replace")
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"traceback text in the answer: {text[:500]}"
    if case.status is not None:
        assert status == case.status, f"{case.op}: expected {case.status}, got {status}: {text[:500]}"
    if status is not None and status >= 400:
        assert headers.get("content-type", "").startswith("application/json"), headers
        payload = json.loads(body)
        assert set(payload) == {"error"}, payload
        error = payload["error"]
        assert set(error) <= {"type", "message", "field"} and {"type", "message"} <= set(error), error
        assert isinstance(error["message"], str) and error["message"].strip(), error
        assert error["type"] == case.type, f"{case.id}: type {error['type']!r}, expected {case.type!r}: {error}"
        if case.field is not None:
            assert error.get("field") == case.field, f"{case.id}: field {error.get('field')!r}: {error}"
        if status == 401:
            assert headers.get("www-authenticate", "").startswith("Bearer"), headers
    elif status in (200, 202) and case.method == "POST" and headers.get("location", "").startswith("/v1/"):
        # accepted: the job (or each job of a batch) exists with its input stored; remove them so the
        # leftover check below holds
        accepted = json.loads(body)
        for job_id in [job["id"] for job in accepted["jobs"]] if "jobs" in accepted else [accepted["id"]]:
            assert job_id in harness.job_ids() and any(name.startswith(job_id) for name in harness.files())
            owner = {"Authorization": f"Bearer {KEYS['corpus']}"}
            deleted = harness.client.delete(f"/v1/jobs/{job_id}", headers=owner)
            assert deleted.status_code == 204, deleted.text

    if case.transport == "live_disconnect":
        _wait_until_settled(harness, jobs_before, files_before, temp_before)
        assert _open_temp_files() <= temp_before, "a spooled upload of the abandoned request is still open"
    assert harness.job_ids() == jobs_before, "a job record was left behind"
    assert harness.files() == files_before, f"files left behind: {sorted(harness.files() - files_before)}"


# --- the corpus itself ------------------------------------------------------------------------------------------


def test_every_operation_has_corpus_cases(app):
    document = app.harness.client.get("/openapi.json").json()
    operations = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    covered = {case.op for case in CASES}
    listed = {case.op for case in CASES if not case.raw.get("unlisted")}  # e.g. a method the route lacks
    assert not listed - operations, f"cases name operations the app does not have: {sorted(listed - operations)}"
    missing = sorted(operations - covered)
    assert not missing, f"operations with no bad-input case (add entries to {CASES_FILE.name}): {missing}"


def test_the_corpus_is_large_and_varied():
    assert len(CASES) >= 80, len(CASES)
    categories = {case.category for case in CASES}
    assert {
        "file",
        "text",
        "number",
        "form",
        "content",
        "path",
        "size",
        "header",
        "webhook",
        "listing",
        "slow",
    } <= (categories), sorted(categories)


def test_no_big_data_is_committed():
    """The corpus's data is the case list; every file it sends is made in code (hostile_files.py)."""
    data = [path for path in CORPUS_DIR.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")]
    assert [path.name for path in data] == ["cases.yaml"], data
    total = sum(path.stat().st_size for path in data)
    assert total < 50_000, f"tests/bad_inputs holds {total} bytes of data; make files in hostile_files.py instead"
