"""Job store on one SQLite file: the embedded default, shared by every replica on one machine.

WAL mode lets the ingress read while a model replica writes progress. Each call opens its own
short-lived connection, so the store is safe to use from any thread or process.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from deployments.errors import JobNotFoundError
from deployments.job_store import Job, new_job

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    params TEXT NOT NULL,
    error TEXT,
    result TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    timings TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""


class SQLiteJobStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _execute(self, sql: str, args: tuple = ()) -> int:
        with closing(self._connect()) as db:
            return db.execute(sql, args).rowcount

    def ping(self) -> None:
        with closing(self._connect()) as db:
            db.execute("SELECT 1").fetchone()

    def create(self, kind: str, params: dict) -> Job:
        job = new_job(kind, params)
        self._execute(
            "INSERT INTO jobs (id, kind, status, created_at, params) VALUES (?, ?, ?, ?, ?)",
            (job.id, job.kind, job.status, job.created_at, json.dumps(params)),
        )
        return job

    def get(self, job_id: str) -> Job:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r}", field="job_id")
        return Job(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            progress=row["progress"],
            step=row["step"],
            total_steps=row["total_steps"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            params=json.loads(row["params"]),
            error=json.loads(row["error"]) if row["error"] else None,
            result=json.loads(row["result"]) if row["result"] else None,
            cancel_requested=bool(row["cancel_requested"]),
            worker=row["worker"],
            timings=json.loads(row["timings"]),
        )

    def start(self, job_id: str, worker: str, total_steps: int) -> bool:
        return (
            self._execute(
                "UPDATE jobs SET status='running', started_at=?, worker=?, total_steps=? "
                "WHERE id=? AND status='queued' AND cancel_requested=0",
                (time.time(), worker, total_steps, job_id),
            )
            == 1
        )

    def report_progress(self, job_id: str, step: int, total_steps: int) -> None:
        self._execute(
            "UPDATE jobs SET step=?, total_steps=?, progress=? WHERE id=? AND status='running'",
            (step, total_steps, step / total_steps if total_steps else 0.0, job_id),
        )

    def succeed(self, job_id: str, result: dict, timings: dict) -> bool:
        return (
            self._execute(
                "UPDATE jobs SET status='succeeded', progress=1, step=total_steps, finished_at=?, result=?, timings=? "
                "WHERE id=? AND status='running'",
                (time.time(), json.dumps(result), json.dumps(timings), job_id),
            )
            == 1
        )

    def fail(self, job_id: str, error_type: str, message: str) -> bool:
        return (
            self._execute(
                "UPDATE jobs SET status='failed', finished_at=?, error=? "
                "WHERE id=? AND status IN ('queued', 'running')",
                (time.time(), json.dumps({"type": error_type, "message": message}), job_id),
            )
            == 1
        )

    def mark_cancelled(self, job_id: str) -> bool:
        return (
            self._execute(
                "UPDATE jobs SET status='cancelled', finished_at=?, cancel_requested=1 "
                "WHERE id=? AND status IN ('queued', 'running')",
                (time.time(), job_id),
            )
            == 1
        )

    def request_cancel(self, job_id: str) -> Job:
        now = time.time()
        self._execute(
            "UPDATE jobs SET status='cancelled', finished_at=?, cancel_requested=1 WHERE id=? AND status='queued'",
            (now, job_id),
        )
        self._execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND status='running'", (job_id,))
        return self.get(job_id)

    def is_cancel_requested(self, job_id: str) -> bool:
        with closing(self._connect()) as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])
