"""Job resources over HTTP: listing, deletion, tenants' isolation, idempotency keys and storage faults.

The app is the Ray-free ingress of ``tests.api_harness`` with no worker started (jobs stay queued unless a
test plays the worker through the store), except where a real shim must write a result.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from pathlib import Path

import pytest

from deployments.jobs.results import ResultFiles
from deployments.jobs.sqlite_store import SQLiteJobStore
from pipelines.video.config import VideoModelConfig
from tests.api_harness import api_client
from tests.images import encode, gradient_image
from tests.test_fencing import StandInVideo, _new_video_job, _video_worker

PNG = encode(gradient_image(96, 64), "PNG")


class NoRender:
    def __call__(self, *args, **kwargs):
        raise AssertionError("no worker runs in these tests")


@pytest.fixture
def client(tmp_path):
    with api_client(tmp_path, NoRender(), VideoModelConfig(path=str(tmp_path / "none")), start_video_worker=False) as c:
        yield c


def _submit(client, headers=None, **fields):
    data = {"duration_s": "0.5", "seed": "1", **{key: str(value) for key, value in fields.items()}}
    return client.post("/v1/videos", files={"image": ("p.png", PNG, "image/png")}, data=data, headers=headers or {})


def _files(client) -> list[Path]:
    return sorted(client.video_generator.results.root.iterdir())


def test_list_pages_newest_first_and_filters(client):
    ids = []
    for seed in range(5):
        response = _submit(client, seed=seed)
        assert response.status_code == 202
        ids.append(response.json()["id"])
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200

    seen, cursor = [], None
    while True:
        page = client.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200
        body = page.json()
        assert len(body["jobs"]) <= 2
        seen += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [job["id"] for job in cancelled["jobs"]] == [ids[1]] and cancelled["next_cursor"] is None
    assert cancelled["jobs"][0]["owner"] == "local" and cancelled["jobs"][0]["expires_at"].endswith("Z")
    assert client.get("/v1/jobs", params={"kind": "background"}).json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"status": "done"}, "status"),
        ({"kind": "audio"}, "kind"),
    ],
)
def test_list_rejects_bad_parameters_naming_them(client, params, field):
    response = client.get("/v1/jobs", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_delete_removes_record_input_and_result(client):
    store, results = client.video_generator.store, client.video_generator.results
    job_id = _submit(client).json()["id"]
    claimed = store.claim_next("video", "w")
    result = results.result_path(job_id, claimed.attempts, "mp4")
    result.write_bytes(b"stand-in mp4")
    assert store.succeed(job_id, {"path": str(result), "content_type": "video/mp4", "bytes": 12}, {}, worker="w")
    assert {path.name for path in _files(client)} == {f"{job_id}.input.png", f"{job_id}.1.mp4"}

    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 204 and response.content == b""
    assert _files(client) == []
    for method, path in [("get", ""), ("get", "/result"), ("get", "/events"), ("post", "/cancel"), ("delete", "")]:
        answer = client.request(method, f"/v1/jobs/{job_id}{path}")
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["type"] == "job_not_found"
    assert client.delete(f"/v1/jobs/{'0' * 32}").status_code == 404


def test_delete_of_a_queued_job_cancels_it_first(client):
    job_id = _submit(client).json()["id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert client.video_generator.store.claim_next("video", "w") is None  # no worker will ever get it
    assert _files(client) == []


def test_delete_while_running_stops_the_worker_and_leaves_no_file(tmp_path):
    store, results = SQLiteJobStore(tmp_path / "jobs.sqlite3"), ResultFiles(tmp_path / "results")
    job_id = _new_video_job(store, results)
    claim = store.claim_next("video", "worker-a")

    class DeletedMidway(StandInVideo):
        def __call__(self, request, progress=None, should_cancel=None):
            store.delete(job_id)  # what DELETE does while the job runs (its files go right after)
            results.delete_files(job_id)
            return super().__call__(request, progress, should_cancel)

    _video_worker(store, results, DeletedMidway(9), tmp_path).run_job(claim, "worker-a")
    assert list(results.root.iterdir()) == []
    assert store.list_jobs(None) == []


def test_another_tenants_job_is_not_found(client):
    store = client.video_generator.store
    theirs = store.create("video", {"prompt": "secret"}, owner="globex")
    for method, path in [("get", ""), ("get", "/result"), ("get", "/events"), ("post", "/cancel"), ("delete", "")]:
        answer = client.request(method, f"/v1/jobs/{theirs.id}{path}")
        assert answer.status_code == 404, (method, path)
        assert "secret" not in answer.text
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert store.get(theirs.id).status == "queued"  # untouched


def test_same_key_same_request_returns_the_first_job(client):
    headers = {"Idempotency-Key": "order-2026-12-01-0001"}
    first = _submit(client, headers, prompt="a slow pan")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = _submit(client, headers, prompt="a slow pan")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.headers["Location"] == first.headers["Location"]
    assert len(client.get("/v1/jobs").json()["jobs"]) == 1
    assert [path.name for path in _files(client)] == [f"{first.json()['id']}.input.png"]  # no stray input

    conflict = _submit(client, headers, prompt="a fast pan")
    assert conflict.status_code == 422, conflict.text
    error = conflict.json()["error"]
    assert error["type"] == "idempotency_conflict" and error["field"] == "Idempotency-Key"
    assert first.json()["id"] in error["message"]
    assert len(_files(client)) == 1
    other = _submit(client, {"Idempotency-Key": "order-2026-12-01-0002"}, prompt="a fast pan")
    assert other.status_code == 202


def test_a_deleted_jobs_key_can_be_used_again(client):
    headers = {"Idempotency-Key": "k"}
    first = _submit(client, headers).json()["id"]
    assert client.delete(f"/v1/jobs/{first}").status_code == 204
    again = _submit(client, headers)
    assert again.status_code == 202 and again.json()["id"] != first


@pytest.mark.parametrize("key", ["x" * 256, "tab\there", " "])
def test_bad_idempotency_keys_are_refused(client, key):
    response = _submit(client, {"Idempotency-Key": key})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "Idempotency-Key"
    assert _files(client) == [] and client.get("/v1/jobs").json()["jobs"] == []


def test_the_longest_key_is_accepted(client):
    assert _submit(client, {"Idempotency-Key": "k" * 255}).status_code == 202


def test_storage_full_on_submit_is_a_503_and_leaves_nothing(client, monkeypatch):
    results = client.video_generator.results

    def full(job_id, png):
        path = results.input_path(job_id)
        with contextlib.suppress(OSError):
            path.write_bytes(png[:10])  # what a half-written file would look like, were it not atomic
            path.unlink()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "save_input", full)
    response = _submit(client)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "storage_unavailable"
    assert _files(client) == [] and client.get("/v1/jobs").json()["jobs"] == []


def test_healthz_is_503_while_results_cannot_be_written(client, monkeypatch):
    assert client.get("/healthz").status_code == 200
    results = client.video_generator.results

    def read_only():
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(results, "probe_writable", read_only)
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["error"]["type"] == "storage_unavailable"
    monkeypatch.undo()
    assert client.get("/healthz").status_code == 200


@contextlib.contextmanager
def _tiny_volume(path: Path, size_kb: int):
    """A real size-capped folder (tmpfs) where mounting is allowed (root on Linux); else skip."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-capped tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_results_volume_fails_the_job_and_leaves_no_partial_file(tmp_path):
    with _tiny_volume(tmp_path / "volume", 64) as volume:
        store, results = SQLiteJobStore(tmp_path / "jobs.sqlite3"), ResultFiles(volume)
        job_id = _new_video_job(store, results)  # the input fits
        filler = volume / "filler.bin"
        with contextlib.suppress(OSError):
            filler.write_bytes(b"\0" * 64 * 1024)  # fill the volume up to its last byte
        claim = store.claim_next("video", "worker-a")
        _video_worker(store, results, StandInVideo(120), tmp_path).run_job(claim, "worker-a")
        job = store.get(job_id)
        assert job.status == "failed" and job.error["type"] == "storage_unavailable", job.error
        names = sorted(path.name for path in volume.iterdir())
        assert names == sorted([f"{job_id}.input.png", "filler.bin"]), names  # no .partial, no half MP4
        with pytest.raises(OSError):
            results.probe_writable()
        filler.unlink()
        results.probe_writable()  # writable again: /healthz turns 200
