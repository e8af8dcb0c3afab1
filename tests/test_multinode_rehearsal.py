"""Multi-node rehearsal on one machine: a Ray head plus a worker node that declares GPUs, running the
production-shaped config (production's GPU fractions and replica counts, tiny models on CPU).

Ray accepts ``--num-gpus`` on a machine without GPUs, so the scheduler places the GPU deployments exactly
as it would on a real GPU node; the replicas then run their tiny models on the CPU. The cluster lives in its
own temp dir on its own ports, and teardown only stops the processes this test started (never a bare
``ray stop``, which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from ray.util.state.exception import RayStateApiException

from pipelines.common.media import probe_video
from tests.images import encode, gradient_image
from tests.production_shaped import app_args, deployment_sections, load_profile, production_shaped

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "vividflow"
WORKER_GPUS = 3  # production at start: a video replica, an edit replica and the fractional ones
CLUSTER_TIMEOUT_S = 120
HEALTHY_TIMEOUT_S = 300
JOB_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _deployment_name(section: str) -> str:
    """The builder names deployments after their config section: ``video_generator`` -> ``VideoGenerator``."""
    return "".join(part.title() for part in section.split("_"))


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<{path}: {exc}>"


@dataclass
class Rehearsal:
    root: Path  # Ray temp dirs and process logs (short: Ray's socket paths must stay under 108 bytes)
    env: dict[str, str]
    gcs_port: int = field(default_factory=_free_port)
    dashboard_port: int = field(default_factory=_free_port)
    http_port: int = field(default_factory=_free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    deployed: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes[name] = process
        return process

    def cli(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / command[0]), *command[1:]],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ray_logs(self) -> str:
        """Tails of the Serve logs of both nodes, for failure messages."""
        parts = []
        for path in sorted(self.root.glob("ray-*/session_latest/logs/serve/*.log")):
            if "controller" in path.name or "replica" in path.name:
                parts.append(f"--- {path.relative_to(self.root)}\n{_tail(path, 1500)}")
        return "\n".join(parts[-8:])

    def alive_nodes(self) -> list:
        from ray.util.state import list_nodes

        return list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)

    def serve_details(self) -> dict:
        response = httpx.get(f"{self.dashboard}/api/serve/applications/", timeout=10)
        response.raise_for_status()
        return response.json()

    def teardown(self) -> None:
        if self.deployed:
            try:
                result = self.cli("serve", "shutdown", "-y", "-a", self.dashboard, timeout=120)
                if result.returncode != 0:
                    print(f"serve shutdown failed ({result.returncode}): {result.stderr[-1000:]}")
            except subprocess.TimeoutExpired:
                print("serve shutdown timed out; stopping the nodes anyway")
        # `ray start --block` stops its node's processes on SIGTERM. A bare `ray stop` would also stop Ray
        # instances this test did not start, so it is never used: whatever outlives the signal (replica workers
        # run in sessions of their own) was snapshotted as a descendant of our processes and is killed by pid.
        descendants: list[psutil.Process] = []
        for process in self.processes.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                descendants += psutil.Process(process.pid).children(recursive=True)
        for name in ("worker", "head", "redis"):
            if name in self.processes and self.processes[name].poll() is None:
                self.processes[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for process in self.processes.values():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        _, alive = psutil.wait_procs(descendants, timeout=max(1.0, deadline - time.monotonic()))
        for leftover in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
        psutil.wait_procs(alive, timeout=10)


def _wait_for(what: str, check, timeout_s: float, diagnostics=lambda: ""):
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError, RayStateApiException) as exc:  # still starting
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s:.0f} s (last error: {last!r})\n{diagnostics()}")
        time.sleep(1)


def _start_redis(rehearsal: Rehearsal) -> str | None:
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = _free_port()
    rehearsal.spawn(
        "redis",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(rehearsal.root)],
    )

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    _wait_for("redis-server answers PING", ping, 30, lambda: _tail(rehearsal.root / "redis.log"))
    return f"redis://127.0.0.1:{port}/0"


def _start_cluster(rehearsal: Rehearsal) -> dict[str, str]:
    """Head (no GPUs) and a worker node declaring GPUs; returns ``{"head": node id, "worker": node id}``."""

    def common() -> list[str]:  # each node gets its own agent ports: both nodes share this host's port space
        ports = ["--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port())]
        return ["--block", "--disable-usage-stats", *ports]

    rehearsal.spawn(
        "head",
        [str(BIN / "ray"), "start", "--head", "--num-cpus", "1", "--num-gpus", "0"]
        + ["--port", str(rehearsal.gcs_port), "--temp-dir", str(rehearsal.root / "ray-head")]
        # the dashboard process is also the API server that the state API and `serve deploy` talk to: with
        # --include-dashboard=false Ray 2.60 starts it with its HTTP server disabled
        + ["--include-dashboard=true", "--dashboard-host", "127.0.0.1"]
        + ["--dashboard-port", str(rehearsal.dashboard_port)]
        + ["--ray-client-server-port", str(_free_port())]
        + common(),
    )
    started = time.monotonic()

    def head_up() -> str | None:
        nodes = rehearsal.alive_nodes()
        return nodes[0].node_ip if nodes else None

    def logs() -> str:
        return "\n".join(f"--- {name}\n{_tail(rehearsal.root / f'{name}.log')}" for name in ("head", "worker"))

    head_ip = _wait_for("the head node is up", head_up, CLUSTER_TIMEOUT_S, logs)
    # the head advertises the machine's own address (Ray replaces 127.0.0.1 with it); traffic stays on this host
    rehearsal.spawn(
        "worker",
        [str(BIN / "ray"), "start", "--address", f"{head_ip}:{rehearsal.gcs_port}"]
        + ["--num-cpus", "2", "--num-gpus", str(WORKER_GPUS), "--resources", json.dumps({"gpu_node": 1})]
        + ["--temp-dir", str(rehearsal.root / "ray-worker")]
        + common(),
    )

    def both_up() -> dict[str, str] | None:
        nodes = rehearsal.alive_nodes()
        if len(nodes) != 2:
            return None
        head = [node.node_id for node in nodes if node.is_head_node]
        worker = [node.node_id for node in nodes if "gpu_node" in node.resources_total]
        assert head and worker and head != worker, nodes
        assert nodes[0].resources_total.get("GPU", 0) + nodes[1].resources_total.get("GPU", 0) == WORKER_GPUS
        return {"head": head[0], "worker": worker[0]}

    node_ids = _wait_for("the worker node joined", both_up, CLUSTER_TIMEOUT_S, logs)
    rehearsal.timings["cluster_start_s"] = time.monotonic() - started
    return node_ids


@pytest.fixture
def rehearsal(request, tiny_models_dir):
    root = Path(tempfile.mkdtemp(prefix="vf-rehearsal-", dir="/tmp"))
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=str(root),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    rehearsal = Rehearsal(root=root, env=env)
    failures = request.session.testsfailed
    try:
        yield rehearsal
    finally:
        rehearsal.teardown()
        if request.session.testsfailed > failures:
            print(f"rehearsal logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def test_production_shaped_config_on_a_head_and_a_gpu_worker(rehearsal, tmp_path, record_property):
    from ray.util.state import list_actors

    redis_url = _start_redis(rehearsal)
    document = production_shaped(
        http_port=rehearsal.http_port,
        results_dir=tmp_path / "results",
        redis_url=redis_url,
        sqlite_path=None if redis_url else tmp_path / "jobs.sqlite3",
    )
    # the rehearsal keeps what decides scheduling exactly as production has it
    production = deployment_sections(app_args(load_profile("production")))
    sections = deployment_sections(app_args(document))
    assert sections.keys() == production.keys()
    for name, options in sections.items():
        for key in ("num_gpus", "num_replicas", "max_ongoing_requests", "autoscaling"):
            assert options.get(key) == production[name].get(key), (name, key)
    # what is deployed at start: autoscaled deployments begin at their minimum (queue-driven ones grow
    # only with queued jobs, and KubeRay adds GPU workers for them)
    asked = sum(options["num_gpus"] * _initial_replicas(options) for options in sections.values())
    assert asked <= WORKER_GPUS, f"production asks for {asked:g} GPUs; the rehearsal's worker declares {WORKER_GPUS}"
    config_path = tmp_path / "production-shaped.yaml"
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))

    node_ids = _start_cluster(rehearsal)

    started = time.monotonic()
    deploy = rehearsal.cli("serve", "deploy", "-a", rehearsal.dashboard, str(config_path))
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    rehearsal.deployed = True
    expected = {_deployment_name(name) for name in sections}

    def healthy() -> dict | None:
        details = rehearsal.serve_details()
        app = (details.get("applications") or {}).get(APP)
        if app is None:
            return None
        assert app["status"] != "DEPLOY_FAILED", app.get("message")
        deployments = app.get("deployments") or {}
        if app["status"] == "RUNNING" and set(deployments) == expected:
            assert all(item["status"] == "HEALTHY" for item in deployments.values()), deployments
            return app
        return None

    def status() -> str:
        return rehearsal.cli("serve", "status", "-a", rehearsal.dashboard).stdout + "\n" + rehearsal.ray_logs()

    app = _wait_for("every deployment HEALTHY", healthy, HEALTHY_TIMEOUT_S, status)
    rehearsal.timings["deploy_to_healthy_s"] = time.monotonic() - started

    # placement: every replica that asks for GPUs is on the GPU worker, within the GPUs that node declares
    actors = list_actors(
        address=rehearsal.dashboard,
        filters=[("state", "=", "ALIVE")],
        detail=True,
        limit=1000,
        raise_on_missing_output=False,
    )
    placements: dict[str, list[str]] = {}
    replica_nodes: set[str] = set()
    gpus_on_worker = 0.0
    for name, options in sections.items():
        deployment = _deployment_name(name)
        alive = [actor for actor in actors if actor.class_name == f"ServeReplica:{APP}:{deployment}"]
        assert len(alive) == options.get("num_replicas", 1), (deployment, alive)
        serve_nodes = {replica["node_id"] for replica in app["deployments"][deployment]["replicas"]}
        assert serve_nodes == {actor.node_id for actor in alive}, (deployment, serve_nodes, alive)
        replica_nodes |= serve_nodes
        for actor in alive:
            gpus = (actor.required_resources or {}).get("GPU", 0.0)
            assert gpus == pytest.approx(options["num_gpus"]), (deployment, actor.required_resources)
            on_worker = actor.node_id == node_ids["worker"]
            placements.setdefault(deployment, []).append(f"{'worker' if on_worker else 'head'} ({gpus:g} GPU)")
            if options["num_gpus"] > 0:
                assert on_worker, f"{deployment} replica on node {actor.node_id}, not on the GPU worker"
            if on_worker:
                gpus_on_worker += gpus
    assert 0 < gpus_on_worker <= WORKER_GPUS, gpus_on_worker
    print(f"placements: {placements}; GPUs reserved on the worker: {gpus_on_worker:g} of {WORKER_GPUS}")

    if document.get("proxy_location") == "EveryNode":  # a proxy on each node that hosts replicas

        def proxies_healthy() -> dict | None:
            proxies = rehearsal.serve_details().get("proxies") or {}
            if proxies.keys() >= replica_nodes and all(p["status"] == "HEALTHY" for p in proxies.values()):
                return proxies
            return None

        proxies = _wait_for("a HEALTHY proxy on each node with replicas", proxies_healthy, 60, status)
        print(f"HEALTHY proxies on {sorted('worker' if n == node_ids['worker'] else 'head' for n in proxies)}")

    # a video job end to end over HTTP
    photo = encode(gradient_image(960, 720), "JPEG")
    started = time.monotonic()
    response = httpx.post(
        f"{rehearsal.url}/v1/videos",
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={"duration_s": "0.5", "seed": "5", "prompt": "the camera slowly pushes in"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    deadline = started + JOB_TIMEOUT_S
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job not finished in {JOB_TIMEOUT_S} s: {job}\n{rehearsal.ray_logs()}"
        time.sleep(0.5)
        job = httpx.get(f"{rehearsal.url}/v1/jobs/{job['id']}", timeout=10).json()
    assert job["status"] == "succeeded", f"{job}\n{rehearsal.ray_logs()}"
    video = httpx.get(f"{rehearsal.url}{job['result']['url']}", timeout=60)
    rehearsal.timings["video_job_end_to_end_s"] = time.monotonic() - started
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) > 0
    path = tmp_path / "rehearsal.mp4"
    path.write_bytes(video.content)
    assert probe_video(path)["frames"] == 9  # 0.5 s at 16 fps

    timings = {key: round(value, 1) for key, value in rehearsal.timings.items()}
    timings["job_store"] = "redis" if redis_url else "sqlite"
    for key, value in timings.items():
        record_property(key, value)
    (tmp_path / "timings.json").write_text(json.dumps(timings, indent=2))
    print(
        f"multi-node rehearsal ({timings['job_store']} job store): cluster start {timings['cluster_start_s']} s, "
        f"deploy to healthy {timings['deploy_to_healthy_s']} s, "
        f"0.5 s video job end to end {timings['video_job_end_to_end_s']} s"
    )


def _initial_replicas(options: dict) -> int:
    autoscaling = options.get("autoscaling") or {}
    if autoscaling:
        return autoscaling.get("initial_replicas") or autoscaling.get("min_replicas", 1)
    return options.get("num_replicas", 1)
