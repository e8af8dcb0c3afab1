"""The soak benchmark's own server: the local profile with API keys on, started and stopped by the benchmark.

Everything lives under ``var/soak/`` (gitignored): the config derived from ``configs/local.yaml``, the keys
file (hashes only; the plain keys stay in the benchmark's memory), the SQLite store, the results folder and
the server's log. The server listens on a free port of 127.0.0.1 and nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
SOAK_DIR = Path("var/soak")  # relative to the repository root, where `serve run` is started


@dataclass(frozen=True)
class TenantKey:
    tenant: str
    key: str
    role: str = "user"


@dataclass(frozen=True)
class SoakLimits:
    """Per user tenant. Sized for 50 users on a 2-core machine: the biggest tenant passes its rate and
    everyone passes the queue limit now and then (so 429s happen), while the queue never runs dry."""

    max_queued_jobs: int = 4
    requests_per_s: float = 8.0
    burst: int = 16
    max_event_streams: int = 6

    def as_config(self) -> dict:
        return {
            "max_queued_jobs": self.max_queued_jobs,
            "requests_per_s": self.requests_per_s,
            "burst": self.burst,
            "max_event_streams": self.max_event_streams,
        }


# The admin only checks the jobs at the end; its limits must not slow that down.
ADMIN_LIMITS = {"max_queued_jobs": 50, "requests_per_s": 1000.0, "burst": 1000, "max_event_streams": 50}


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def mint_key(tenant: str, role: str = "user") -> TenantKey:
    """The same shape of key ``vividflow keys new`` prints (``vf_`` + 32 random bytes, URL-safe)."""
    return TenantKey(tenant, "vf_" + secrets.token_urlsafe(32), role)


def write_soak_config(root: Path, keys: list[TenantKey], limits: SoakLimits, port: int) -> Path:
    """``var/soak/config.yaml``: the local profile's models and deployments, its own store, keys and port."""
    soak = root / SOAK_DIR
    if soak.exists():  # a fresh store and results folder every run: leftovers would be counted as leaks
        shutil.rmtree(soak)
    (soak / "results").mkdir(parents=True)
    entries = [
        {"tenant": k.tenant, "key_sha256": hashlib.sha256(k.key.encode()).hexdigest(), "role": k.role} for k in keys
    ]
    (soak / "keys.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    document = yaml.safe_load((root / "configs" / "local.yaml").read_text())
    document["http_options"] = {"host": LOOPBACK, "port": port}
    args = document["applications"][0]["args"]
    args["job_store"] = {
        "backend": "sqlite",
        "sqlite_path": str(SOAK_DIR / "jobs.sqlite3"),
        "results_dir": str(SOAK_DIR / "results"),
    }
    ingress = args.setdefault("ingress", {})
    ingress["auth"] = {"mode": "api_keys", "keys_file": str(SOAK_DIR / "keys.yaml")}
    ingress["limits"] = limits.as_config()
    ingress["tenant_limits"] = {k.tenant: ADMIN_LIMITS for k in keys if k.role == "admin"}
    path = soak / "config.yaml"
    path.write_text(
        "# Written by benchmarks/soak.py for one run; derived from configs/local.yaml (auth on).\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return path


class SoakServer:
    """``serve run var/soak/config.yaml`` in its own session (process group), stopped SIGINT then SIGKILL."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://{LOOPBACK}:{port}"
        self.log_path = root / SOAK_DIR / "serve.log"
        self.process: subprocess.Popen | None = None
        self._ray_tmp: str | None = None

    def start(self, config: Path) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
        # Its own Ray temp folder (short: Ray's socket paths must stay under 108 bytes) so that this server
        # never joins a cluster someone else on the machine started.
        self._ray_tmp = env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-soak-", dir="/tmp")
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(self.root / ".venv" / "bin" / "serve"), "run", "--address", "local", str(config)],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"serve run exited early; its log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=3).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"no healthy answer from {self.url} within {timeout_s:.0f} s; its log:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def session_pids(self) -> list[int]:
        """Every process still in the server's session: `serve run`, Ray's daemons and the replicas."""
        if self.process is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # field 6 of /proc/<pid>/stat is the session id; the command name (field 2) may hold spaces
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == self.process.pid:
                pids.append(int(entry.name))
        return pids

    def resident_mib(self) -> float:
        """Resident memory of the whole server (all processes of its session), in MiB."""
        total_kib = 0
        for pid in self.session_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
            except OSError:
                continue
        return round(total_kib / 1024, 1)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        # Ray daemons may have left the process group but not the session: end those by their ids.
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self._ray_tmp:
            shutil.rmtree(self._ray_tmp, ignore_errors=True)
