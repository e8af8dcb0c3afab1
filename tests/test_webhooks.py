"""Webhooks: signed deliveries of a job's final state, retried with backoff, only to allowed targets.

The receiver is a real HTTP server on the loopback interface. It checks every signature twice: once the way
the Standard Webhooks specification defines it (HMAC-SHA256 of ``id.timestamp.body`` with the base64-decoded
secret, computed here by hand), once with the scheme's reference library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from deployments.config import WebhookConfig
from deployments.jobs.webhook_targets import WebhookTargetError, check_webhook_url
from deployments.jobs.webhooks import load_signing_secret
from pipelines.video.config import VideoModelConfig
from tests.api_harness import api_client
from tests.images import encode, gradient_image
from tests.offline_dns import offline_resolve

PNG = encode(gradient_image(96, 64), "PNG")


class Receiver:
    """Answers 500 to the first ``failures`` deliveries, then 204; records what it got."""

    def __init__(self, secret: str, failures: int) -> None:
        self.secret, self.failures, self.deliveries = secret, failures, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                headers = {key.lower(): value for key, value in self.headers.items()}
                receiver.deliveries.append({"headers": headers, "body": body, "valid": receiver.verify(headers, body)})
                status = 500 if len(receiver.deliveries) <= receiver.failures else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/vividflow"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verify(self, headers: dict, body: str) -> bool:
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body}".encode()
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        by_hand = any(hmac.compare_digest(expected, part) for part in headers["webhook-signature"].split(" "))
        Webhook(self.secret).verify(body, headers)  # raises on a bad signature or an old timestamp
        fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 60
        return by_hand and fresh

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _wait(predicate, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


class NoRender:
    def __call__(self, *args, **kwargs):
        raise AssertionError("no worker runs in these tests")


@pytest.fixture
def hooks(tmp_path):
    """(client, secret) with deliveries allowed to the loopback receiver and fast retries."""

    def open_client(**options):
        config = WebhookConfig(
            allowed_hosts=["127.0.0.1"],
            signing_secret_file=str(tmp_path / "webhook-secret"),
            backoff_s=0.05,
            poll_interval_s=0.02,
            **options,
        )
        model = VideoModelConfig(path=str(tmp_path / "none"))
        return api_client(tmp_path, NoRender(), model, start_video_worker=False, webhooks=config)

    return open_client


def _submit(client, url: str, **fields):
    data = {"duration_s": "0.5", "seed": "1", "webhook_url": url, **fields}
    return client.post("/v1/videos", files={"image": ("p.png", PNG, "image/png")}, data=data)


def test_a_final_state_is_delivered_signed_and_retried_with_one_id(hooks, tmp_path):
    with hooks() as client:
        secret = (tmp_path / "webhook-secret").read_text().strip()
        with Receiver(secret, failures=2) as receiver:
            job = _submit(client, receiver.url).json()
            assert job["webhook"] == {
                "url": receiver.url,
                "status": "pending",
                "attempts": 0,
                "last_attempt_at": None,
                "last_status_code": None,
                "last_error": None,
                "delivered_at": None,
                "id": None,
            }
            time.sleep(0.2)
            assert receiver.deliveries == []  # nothing before the job has ended
            assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
            _wait(lambda: client.get(f"/v1/jobs/{job['id']}").json()["webhook"]["status"] == "delivered")
            time.sleep(0.3)  # and nothing after it was delivered
            assert len(receiver.deliveries) == 3
            assert all(delivery["valid"] for delivery in receiver.deliveries)
            assert {delivery["headers"]["webhook-id"] for delivery in receiver.deliveries} == {f"msg_{job['id']}"}
            assert len({delivery["body"] for delivery in receiver.deliveries}) == 1
            sent = json.loads(receiver.deliveries[0]["body"])
            assert sent["id"] == job["id"] and sent["status"] == "cancelled" and "webhook" not in sent
            state = client.get(f"/v1/jobs/{job['id']}").json()["webhook"]
            assert state["attempts"] == 3 and state["last_status_code"] == 204 and state["last_error"] is None
            assert state["id"] == f"msg_{job['id']}" and state["delivered_at"].endswith("Z")


def test_a_succeeded_job_is_delivered_with_its_result(hooks, tmp_path):
    with hooks() as client:
        secret = (tmp_path / "webhook-secret").read_text().strip()
        store, results = client.video_generator.store, client.video_generator.results
        with Receiver(secret, failures=0) as receiver:
            job_id = _submit(client, receiver.url).json()["id"]
            claim = store.claim_next("video", "w")
            path = results.result_path(job_id, claim.attempts, "mp4")
            path.write_bytes(b"mp4")
            assert store.succeed(job_id, {"path": str(path), "content_type": "video/mp4", "bytes": 3}, {}, worker="w")
            _wait(lambda: len(receiver.deliveries) == 1)
            sent = json.loads(receiver.deliveries[0]["body"])
            assert sent["status"] == "succeeded" and sent["result"]["url"] == f"/v1/jobs/{job_id}/result"
            assert receiver.deliveries[0]["valid"]


def test_delivery_is_given_up_after_the_retry_window(hooks, tmp_path):
    with hooks(retry_for_s=0.3) as client:
        secret = (tmp_path / "webhook-secret").read_text().strip()
        with Receiver(secret, failures=1000) as receiver:
            job_id = _submit(client, receiver.url).json()["id"]
            client.post(f"/v1/jobs/{job_id}/cancel")
            _wait(lambda: client.get(f"/v1/jobs/{job_id}").json()["webhook"]["status"] == "failed")
            attempts = len(receiver.deliveries)
            time.sleep(0.4)
            assert len(receiver.deliveries) == attempts >= 2  # retried, then never again
            state = client.get(f"/v1/jobs/{job_id}").json()["webhook"]
            assert state["attempts"] == attempts and state["last_error"] == "HTTP 500"


def test_a_deleted_job_is_never_delivered(hooks, tmp_path):
    with hooks() as client:
        secret = (tmp_path / "webhook-secret").read_text().strip()
        with Receiver(secret, failures=0) as receiver:
            job_id = _submit(client, receiver.url).json()["id"]
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
            time.sleep(0.3)
            assert receiver.deliveries == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.7/hook",  # private
        "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "https://[::1]:8443/",
        "https://127.0.0.2/hook",  # loopback, but not the listed address
        "https://rebinds.example.org/hook",  # a name that resolves to a private address
        "https://hooks.example.com/hook",  # a documentation range: not public either
        "http://public.example.net/hook",  # public, but plain http
        "https://no-such-host.invalid/",
        "ftp://public.example.net/",
        "https://user:pw@public.example.net/",
        "not a url",
        "https://public.example.net:99999/",
    ],
)
def test_targets_outside_the_allow_list_are_refused_at_submission(hooks, url):
    with hooks() as client:
        response = _submit(client, url)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "webhook_url"
        assert client.get("/v1/jobs").json()["jobs"] == []
        assert list(client.video_generator.results.root.iterdir()) == []


def test_the_target_check_on_its_own():
    assert [str(a) for a in check_webhook_url("https://public.example.net/x", [], resolve=offline_resolve)] == [
        "8.8.8.8"
    ]
    assert check_webhook_url("http://10.0.0.7/x", ["10.0.0.0/8"], resolve=offline_resolve)  # listed network
    assert check_webhook_url("http://rebinds.example.org/x", ["rebinds.example.org"], resolve=offline_resolve)
    with pytest.raises(WebhookTargetError):
        check_webhook_url("https://[::ffff:127.0.0.1]/", [], resolve=offline_resolve)  # loopback in IPv6 form


def test_webhooks_can_be_turned_off(hooks):
    with hooks(enabled=False) as client:
        response = _submit(client, "http://127.0.0.1:9/x")
        assert response.status_code == 400 and response.json()["error"]["field"] == "webhook_url"


def test_the_signing_secret_is_created_once_and_private(tmp_path):
    path = tmp_path / "secrets" / "webhook"
    first = load_signing_secret(path)
    assert first.startswith("whsec_") and len(base64.b64decode(first[6:])) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_secret(path) == first
    path.write_text("not-a-secret")
    with pytest.raises(ValueError, match="whsec_"):
        load_signing_secret(path)
