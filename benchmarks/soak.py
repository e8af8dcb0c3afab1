"""Soak benchmark: many simulated users on the local profile with API keys on, for minutes, loopback only.

It starts its own server (``serve run var/soak/config.yaml``, derived from ``configs/local.yaml`` with
``ingress.auth.mode: api_keys``, three user tenants and one admin, per-tenant limits small enough that 429s
happen), runs the users, drains the queue, checks every accepted job and the tenant isolation, stops the
server (SIGINT, then SIGKILL) even on errors, and prints and writes a JSON report:

    .venv/bin/python benchmarks/soak.py --quick              # rehearsal: 6 users, 45 s
    .venv/bin/python benchmarks/soak.py                      # 50 users, 10 minutes

Goals: 0 server errors (5xx) and 0 jobs lost (accepted with 202, then not final or without a result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.soak_checks import check_isolation, check_jobs, check_storage, check_stream_slots, drain  # noqa: E402
from benchmarks.soak_server import (  # noqa: E402
    SOAK_DIR,
    SoakLimits,
    SoakServer,
    free_loopback_port,
    mint_key,
    write_soak_config,
)
from benchmarks.soak_stats import JobLedger, RequestStats  # noqa: E402
from benchmarks.soak_users import ACTIONS, MAX_BACKOFF_S, SimulatedUser  # noqa: E402

USER_TENANTS = ("tenant-a", "tenant-b", "tenant-c")
USER_SHARES = (0.5, 0.3, 0.2)  # 50 users: 25 / 15 / 10
ADMIN_TENANT = "ops"


def users_per_tenant(users: int) -> dict[str, int]:
    counts = {t: max(1, round(users * share)) for t, share in zip(USER_TENANTS, USER_SHARES, strict=True)}
    counts[USER_TENANTS[0]] += users - sum(counts.values())
    return counts


async def soak(args, server: SoakServer, keys: dict, limits: SoakLimits) -> dict:
    stats, ledger = RequestStats(), JobLedger()
    spread = users_per_tenant(args.users)
    started = time.monotonic()
    stop_at = started + args.seconds
    users, number = [], 0
    for tenant, count in spread.items():
        for _ in range(count):
            number += 1
            users.append(
                SimulatedUser(number, tenant, keys[tenant].key, server.url, stats, ledger, stop_at, tuple(args.think_s))
            )
    rss_before = server.resident_mib()
    tasks = [asyncio.create_task(user.run()) for user in users]
    # bounded: a user still inside a request past the end gets a minute to finish it, then is cancelled
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + 60)
    for task in pending:
        task.cancel()
    crashed = [repr(task.exception()) for task in done if not task.cancelled() and task.exception()]
    load_s = time.monotonic() - started
    rss_after_load = server.resident_mib()
    print(f"load phase over after {load_s:.0f} s; draining", flush=True)

    user_keys = {t: keys[t].key for t in USER_TENANTS}
    drained = await drain(server.url, user_keys, args.drain_s)
    await asyncio.sleep(12)  # longer than the streams' keep-alive tick: every hung-up stream has been noticed
    slots = await check_stream_slots(server.url, user_keys, limits.max_event_streams)
    drained_again = await drain(server.url, user_keys, 120)
    accepted = {**ledger.accepted, **slots["jobs"]}
    jobs = await check_jobs(server.url, keys[ADMIN_TENANT].key, accepted)
    isolation = await check_isolation(server.url, user_keys, ledger.accepted)
    storage = check_storage(REPO / SOAK_DIR / "jobs.sqlite3", REPO / SOAK_DIR / "results", accepted)
    return {
        "load_seconds": round(load_s, 1),
        "users_per_tenant": spread,
        "user_task_errors": crashed[:10],
        "users_cancelled_at_end": len(pending),
        "requests": stats.summary(load_s),
        "jobs": job_figures(ledger, jobs, spread),
        "drain": {"first": drained, "after_stream_check": drained_again},
        "isolation": isolation,
        "leaks": {
            "event_stream_slots": {k: v for k, v in slots.items() if k != "jobs"},
            "storage": storage,
            "server_rss_mib": {"before_load": rss_before, "after_load": rss_after_load, "end": server.resident_mib()},
        },
        "anomalies": ledger.anomalies,
        "replays_with_same_key": dict(ledger.replays),
        "job_ids": {t: ledger.ids_of(t) for t in USER_TENANTS},  # the server's own ids, for looking jobs up
    }


def job_figures(ledger: JobLedger, checked: dict, spread: dict) -> dict:
    outcome = checked["outcome"]
    completed = {t: checked["by_tenant"].get(t, {}).get("succeeded", 0) for t in USER_TENANTS}
    submitted = {t: ledger.submitted[t] for t in USER_TENANTS}
    accepted = {t: len(ledger.ids_of(t)) for t in USER_TENANTS}

    def shares(counts: dict) -> dict:
        total = sum(counts.values())
        return {t: round(n / total, 3) if total else 0.0 for t, n in counts.items()}

    return {
        "submitted": sum(submitted.values()),
        "accepted_202": sum(accepted.values()),
        "rejected_429": sum(ledger.rejected_429.values()),
        "completed": outcome.get("succeeded", 0),
        "cancelled": outcome.get("cancelled", 0),
        "failed": outcome.get("failed", 0),
        "failed_by_type": {k.split(":", 1)[1]: v for k, v in outcome.items() if k.startswith("failed:")},
        "lost": len(checked["lost"]),
        "lost_jobs": checked["lost"][:50],
        "per_tenant": {
            t: {
                "users": spread[t],
                "submitted": submitted[t],
                "accepted": accepted[t],
                "rejected_429": ledger.rejected_429[t],
                **checked["by_tenant"].get(t, {}),
            }
            for t in USER_TENANTS
        },
        "share_of_users": shares(spread),
        "share_of_submitted": shares(submitted),
        "share_of_accepted": shares(accepted),
        "share_of_completed": shares(completed),
    }


def print_summary(report: dict) -> None:
    requests, jobs = report["requests"], report["jobs"]
    print(f"\n== soak: {report['users']} users, {report['load_seconds']:.0f} s, auth on, {report['url']}")
    print(f"requests {requests['requests']} ({requests['requests_per_s']}/s); statuses {requests['statuses']}")
    print(f"5xx {requests['server_errors_5xx']}, transport errors {requests['transport_errors']}, "
          f"429 share {requests['share_429']:.1%}, unexpected 4xx {requests['unexpected_4xx']}")  # fmt: skip
    print(f"{'endpoint':32} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for route, figures in requests["routes"].items():
        n, p50, p95, p99 = (figures[k] for k in ("requests", "p50_ms", "p95_ms", "p99_ms"))
        print(f"{route:32} {n:>6} {p50:>8} {p95:>8} {p99:>8}")
    print(f"jobs submitted {jobs['submitted']}, accepted {jobs['accepted_202']}, 429 {jobs['rejected_429']}, "
          f"completed {jobs['completed']}, cancelled {jobs['cancelled']}, failed {jobs['failed']}, "
          f"LOST {jobs['lost']}")  # fmt: skip
    print(f"share of completed {jobs['share_of_completed']}; of submitted {jobs['share_of_submitted']}")
    print(f"isolation failures {len(report['isolation']['failures'])} of {report['isolation']['cross_tenant_requests']}"
          f"; stream slots leaked {report['leaks']['event_stream_slots']['leaked']}; "
          f"stray files {report['leaks']['storage']['stray_file_count']}, "
          f"file problems {report['leaks']['storage']['file_problem_count']}")  # fmt: skip
    print(f"replays with the same key {report['replays_with_same_key']}; anomalies {len(report['anomalies'])}")


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a rehearsal: 6 users for 45 s")
    parser.add_argument("--think-s", type=float, nargs=2, default=(0.5, 2.5), metavar=("MIN", "MAX"))
    parser.add_argument("--drain-s", type=float, default=300.0, help="how long to wait for running jobs to end")
    parser.add_argument("--start-timeout-s", type=float, default=420.0)
    parser.add_argument("--out", type=Path, default=REPO / SOAK_DIR / "report.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.minutes = 6, 0.75
    args.seconds = args.minutes * 60
    limits = SoakLimits()
    keys = {t: mint_key(t) for t in USER_TENANTS} | {ADMIN_TENANT: mint_key(ADMIN_TENANT, "admin")}
    port = free_loopback_port()
    config = write_soak_config(REPO, list(keys.values()), limits, port)
    server = SoakServer(REPO, port)
    report = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/soak.py", *(argv if argv is not None else sys.argv[1:])]),
        "git": git_revision(),
        "host": platform.node(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "url": server.url,
        "users": args.users,
        "minutes": args.minutes,
        "think_s": list(args.think_s),
        "retry_after_cap_s": MAX_BACKOFF_S,
        "action_weights": ACTIONS,
        "limits_per_tenant": limits.as_config(),
        "config": str(config.relative_to(REPO)),
    }
    try:
        server.start(config)
        report["server_ready_s"] = round(server.wait_healthy(args.start_timeout_s), 1)
        print(f"server healthy on {server.url} after {report['server_ready_s']} s", flush=True)
        report |= asyncio.run(soak(args, server, keys, limits))
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print_summary(report)
    print(f"report: {args.out}")
    failed = report["requests"]["server_errors_5xx"] or report["jobs"]["lost"] or report["isolation"]["failures"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
