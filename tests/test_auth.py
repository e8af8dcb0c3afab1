"""API keys and tenants (DESIGN §7), per-tenant limits, event-stream limits, CORS and redirects."""

from __future__ import annotations

import logging
import re

import pytest
from typer.testing import CliRunner

from deployments.config import AuthConfig, CorsConfig, TenantLimits
from deployments.http import auth as auth_module
from deployments.http.auth import key_sha256, parse_keys
from pipelines.video.config import VideoModelConfig
from tests.api_harness import api_client
from tests.images import encode, gradient_image
from vividflow.cli import app as cli_app

PNG = encode(gradient_image(96, 64), "PNG")
KEYS = {"acme": "vf_acme-key-0001", "globex": "vf_globex-key-0002", "ops": "vf_ops-admin-key-0003"}


class NoRender:
    def __call__(self, *args, **kwargs):
        raise AssertionError("no worker runs in these tests")


def _keys_file(path, keys=KEYS):
    lines = [
        f"- {{tenant: {'ops' if tenant == 'ops' else tenant}, key_sha256: {key_sha256(key)}, "
        f"role: {'admin' if tenant == 'ops' else 'user'}}}"
        for tenant, key in keys.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _bearer(tenant: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture
def secured(tmp_path):
    def open_client(limits: TenantLimits | None = None, **settings):
        keys = _keys_file(tmp_path / "keys.yaml")
        model = VideoModelConfig(path=str(tmp_path / "none"))
        return api_client(
            tmp_path,
            NoRender(),
            model,
            start_video_worker=False,
            auth=AuthConfig(mode="api_keys", keys_file=str(keys)),
            limits=limits or TenantLimits(requests_per_s=1000, burst=1000),
            **settings,
        )

    return open_client


def _submit(client, tenant: str):
    data = {"duration_s": "0.5", "seed": "1"}
    return client.post("/v1/videos", files={"image": ("p.png", PNG, "image/png")}, data=data, headers=_bearer(tenant))


def test_without_a_key_only_health_and_the_page_answer(secured):
    with secured() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/").status_code == 200  # the web UI asks for a key itself
        for method, path in [
            ("get", "/v1/jobs"),
            ("get", "/v1/templates/motion"),
            ("post", "/v1/videos"),
            ("get", f"/v1/jobs/{'0' * 32}"),
            ("get", "/metrics"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="vividflow"'
            assert response.json()["error"]["type"] == "unauthenticated"


@pytest.mark.parametrize("header", ["Bearer vf_not-a-key", "Basic dXNlcjpwYXNz", "Bearer ", "vf_acme-key-0001"])
def test_wrong_keys_and_schemes_are_401(secured, header):
    with secured() as client:
        response = client.get("/v1/jobs", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="vividflow"')
        assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_tenants_never_see_each_others_jobs_and_admins_see_all(secured):
    with secured() as client:
        acme_job = _submit(client, "acme").json()
        assert acme_job["owner"] == "acme"
        globex_job = _submit(client, "globex").json()
        for method, path in [("get", ""), ("get", "/result"), ("get", "/events"), ("post", "/cancel"), ("delete", "")]:
            answer = client.request(method, f"/v1/jobs/{acme_job['id']}{path}", headers=_bearer("globex"))
            assert answer.status_code == 404, (method, path)
        assert [job["id"] for job in client.get("/v1/jobs", headers=_bearer("globex")).json()["jobs"]] == [
            globex_job["id"]
        ]
        everyone = client.get("/v1/jobs", headers=_bearer("ops")).json()["jobs"]
        assert {job["id"] for job in everyone} == {acme_job["id"], globex_job["id"]}
        assert client.get(f"/v1/jobs/{acme_job['id']}", headers=_bearer("ops")).status_code == 200
        assert client.get(f"/v1/jobs/{acme_job['id']}", headers=_bearer("acme")).json()["status"] == "queued"


def test_keys_never_reach_job_records_or_logs(secured, caplog):
    caplog.set_level(logging.DEBUG)
    with secured() as client:
        job = _submit(client, "acme").json()
        client.get("/v1/jobs", headers={"Authorization": "Bearer vf_wrong-guess"})
        record = client.video_generator.store.get(job["id"])
        assert KEYS["acme"] not in repr(record) and KEYS["acme"] not in str(job)
    assert all(key not in caplog.text for key in (*KEYS.values(), "vf_wrong-guess"))


def test_metrics_are_for_admins_and_docs_are_public(secured):
    with secured() as client:
        assert client.get("/metrics", headers=_bearer("acme")).status_code == 403
        assert client.get("/metrics", headers=_bearer("ops")).status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_docs_can_be_admin_only(tmp_path):
    keys = _keys_file(tmp_path / "keys.yaml")
    config = AuthConfig(mode="api_keys", keys_file=str(keys), docs="admin")
    with api_client(tmp_path, NoRender(), VideoModelConfig(path="none"), start_video_worker=False, auth=config) as c:
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/openapi.json", headers=_bearer("acme")).status_code == 403
        assert c.get("/openapi.json", headers=_bearer("ops")).status_code == 200


def test_keys_rotate_without_a_restart(secured, tmp_path, monkeypatch):
    monkeypatch.setattr(auth_module, "RELOAD_CHECK_S", 0.0)
    with secured() as client:
        assert client.get("/v1/jobs", headers=_bearer("acme")).status_code == 200
        rotated = {**KEYS, "acme": "vf_acme-key-0099"}
        _keys_file(tmp_path / "keys.yaml", rotated)
        assert client.get("/v1/jobs", headers=_bearer("acme")).status_code == 401  # the old key is revoked
        new = client.get("/v1/jobs", headers={"Authorization": "Bearer vf_acme-key-0099"})
        assert new.status_code == 200
        (tmp_path / "keys.yaml").write_text("- {tenant: BAD}\n")  # a broken edit keeps the last good keys
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer vf_acme-key-0099"}).status_code == 200


def test_request_rate_per_tenant(secured):
    with secured(TenantLimits(requests_per_s=0.5, burst=3)) as client:
        answers = [client.get("/v1/jobs", headers=_bearer("acme")) for _ in range(4)]
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        assert answers[-1].json()["error"]["type"] == "overloaded"
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 2
        assert client.get("/v1/jobs", headers=_bearer("globex")).status_code == 200  # its own bucket
        assert client.get("/healthz").status_code == 200  # health checks are never limited


def test_queued_jobs_per_tenant(secured):
    with secured(TenantLimits(max_queued_jobs=2, requests_per_s=1000, burst=1000)) as client:
        assert [_submit(client, "acme").status_code for _ in range(3)] == [202, 202, 429]
        assert _submit(client, "globex").status_code == 202


def test_event_streams_end_with_a_retry_hint(secured):
    with secured(event_stream_max_s=0.3) as client:
        job = _submit(client, "acme").json()
        body = client.get(f"/v1/jobs/{job['id']}/events", headers=_bearer("acme")).text
        assert body.startswith("event: progress\n") and re.search(r"\nretry: \d+\n\n$", body)


def test_cors_is_off_by_default_and_configurable(secured):
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    with secured() as client:
        answer = client.options("/v1/videos", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-origin" not in client.get("/v1/jobs", headers=_bearer("acme")).headers
    with secured(cors=CorsConfig(allow_origins=["https://app.example.com"])) as client:
        answer = client.options("/v1/videos", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
        denied = client.get("/v1/jobs", headers={"Origin": "https://app.example.com"})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example.com"
        other = client.options("/v1/videos", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_redirect_is_built_from_the_host_header(secured):
    with secured() as client:
        answer = client.get("/v1/jobs/", headers={**_bearer("acme"), "Host": "evil.example"}, follow_redirects=False)
        assert answer.status_code == 404 and "location" not in answer.headers


def test_the_keys_file_is_checked(tmp_path):
    with pytest.raises(ValueError, match="entry 1: tenant"):
        parse_keys("- {tenant: 'Bad Tenant', key_sha256: " + "a" * 64 + ", role: user}")
    with pytest.raises(ValueError, match="entry 2: key_sha256"):
        parse_keys(f"- {{tenant: a, key_sha256: {'a' * 64}}}\n- {{tenant: b, key_sha256: nothex}}")
    with pytest.raises(ValueError, match="role"):
        parse_keys(f"- {{tenant: a, key_sha256: {'a' * 64}, role: root}}")


def test_the_cli_mints_a_key_the_service_accepts():
    result = CliRunner().invoke(cli_app, ["keys", "new", "--tenant", "acme", "--role", "admin"])
    assert result.exit_code == 0, result.output
    key = next(line for line in result.stdout.splitlines() if line.startswith("vf_"))
    entry = next(line for line in result.stdout.splitlines() if line.startswith("- {"))
    callers = parse_keys(entry)
    assert callers[key_sha256(key)].tenant == "acme" and callers[key_sha256(key)].role == "admin"
    assert len(key) > 40
    refused = CliRunner().invoke(cli_app, ["keys", "new", "--tenant", "Not OK"])
    assert refused.exit_code == 2


def test_a_repeat_with_its_key_is_answered_even_when_the_quota_is_full(secured):
    with secured(TenantLimits(max_queued_jobs=1, requests_per_s=1000, burst=1000)) as client:
        headers = {**_bearer("acme"), "Idempotency-Key": "retry-me"}
        data, files = {"duration_s": "0.5", "seed": "1"}, {"image": ("p.png", PNG, "image/png")}
        first = client.post("/v1/videos", files=files, data=data, headers=headers)
        assert first.status_code == 202
        again = client.post("/v1/videos", files=files, data=data, headers=headers)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # its own job fills the quota
        fresh = client.post("/v1/videos", files=files, data=data, headers={**headers, "Idempotency-Key": "new"})
        assert fresh.status_code == 429
