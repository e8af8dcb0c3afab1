"""Job store on one SQLite file: the embedded default, shared by every replica on one machine.

WAL mode lets the ingress read while a model replica writes progress. Each call opens its own
short-lived connection, so the store is safe to use from any thread or process. Read-then-write
operations (claiming, reaping, the migration) run in ``BEGIN IMMEDIATE`` transactions: the write lock is
taken before the read, so two replicas can never both see the same queued job as free.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from deployments.errors import JobNotFoundError
from deployments.jobs.lora_affinity import DEFAULT_LOOKAHEAD, ClaimCandidate, pick_with_affinity
from deployments.jobs.store import (
    DEFAULT_IDEMPOTENCY_TTL_S,
    DEFAULT_OWNER,
    DEFAULT_RETENTION_S,
    FINAL_STATUSES,
    Idempotency,
    IdempotencyConflict,
    Job,
    new_job,
)

_TABLE = """
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
    timings TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    heartbeat_at REAL
)
"""
_IDEMPOTENCY_TABLE = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, key)
)
"""
_TURNS_TABLE = """
CREATE TABLE IF NOT EXISTS tenant_turns (
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    served_at REAL NOT NULL,
    PRIMARY KEY (kind, owner)
)
"""
_BUCKETS_TABLE = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at REAL NOT NULL
)
"""
_INDEXES = (
    # claim_next (oldest queued of a kind), queue_depth and the reaper's scan of running jobs
    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, kind, created_at)",
    # GET /v1/jobs: one owner's jobs, newest first
    "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created_at)",
    # a tenant's queued jobs (its limit)
    "CREATE INDEX IF NOT EXISTS jobs_owner_status ON jobs (owner, status)",
    # the sweeper: ended jobs by age
    "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at)",
    # the webhook deliverer: jobs with a delivery due
    "CREATE INDEX IF NOT EXISTS jobs_webhook_due ON jobs (webhook_due)",
    # GET /v1/batches/{id}: a batch's jobs in order
    "CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, created_at)",
)
_FINAL = "('succeeded', 'failed', 'cancelled')"
assert set(_FINAL.strip("()").replace("'", "").split(", ")) == FINAL_STATUSES

# Columns added after files were already in use, with the DDL that adds them to such a file.
_ADDED_COLUMNS = {
    "attempts": "ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "heartbeat_at": "ALTER TABLE jobs ADD COLUMN heartbeat_at REAL",
    "owner": f"ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '{DEFAULT_OWNER}'",
    "batch_id": "ALTER TABLE jobs ADD COLUMN batch_id TEXT",
    "webhook": "ALTER TABLE jobs ADD COLUMN webhook TEXT",
    "webhook_due": "ALTER TABLE jobs ADD COLUMN webhook_due REAL",
    "idempotency_key": "ALTER TABLE jobs ADD COLUMN idempotency_key TEXT",
    "segment": "ALTER TABLE jobs ADD COLUMN segment INTEGER",
    "total_segments": "ALTER TABLE jobs ADD COLUMN total_segments INTEGER",
}


class SQLiteJobStore:
    def __init__(
        self,
        path: str | Path,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
    ) -> None:
        if retention_s <= 0 or idempotency_ttl_s <= 0:
            raise ValueError("retention_s and idempotency_ttl_s must be positive")
        self.retention_s = retention_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")  # not allowed inside a transaction
        # One transaction, so replicas opening an old file at the same time do not both try the ALTER.
        with self._transaction() as db:
            db.execute(_TABLE)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            missing = [name for name in _ADDED_COLUMNS if name not in columns]
            for name in missing:
                db.execute(_ADDED_COLUMNS[name])
            if "heartbeat_at" in missing:
                # Jobs left running by pre-queue replicas never heartbeat: date their lease from their start
                # so the reaper settles them instead of leaving them running forever.
                db.execute(
                    "UPDATE jobs SET heartbeat_at = COALESCE(started_at, created_at), attempts = 1 "
                    "WHERE status = 'running'"
                )
            db.execute(_IDEMPOTENCY_TABLE)
            db.execute(_TURNS_TABLE)
            db.execute(_BUCKETS_TABLE)
            for index in _INDEXES:
                db.execute(index)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _execute(self, sql: str, args: tuple = ()) -> int:
        with closing(self._connect()) as db:
            return db.execute(sql, args).rowcount

    def ping(self) -> None:
        with closing(self._connect()) as db:
            db.execute("SELECT 1").fetchone()

    def create(
        self,
        kind: str,
        params: dict,
        job_id: str | None = None,
        *,
        owner: str = DEFAULT_OWNER,
        batch_id: str | None = None,
        webhook_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> Job:
        job = new_job(kind, params, job_id, owner=owner, batch_id=batch_id, webhook_url=webhook_url)
        with self._transaction() as db:
            if idempotency is not None:
                earlier = db.execute(
                    "SELECT k.fingerprint, k.job_id FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id "
                    "WHERE k.owner = ? AND k.key = ? AND k.created_at >= ?",
                    (owner, idempotency.key, job.created_at - self.idempotency_ttl_s),
                ).fetchone()
                if earlier is not None:
                    if earlier["fingerprint"] != idempotency.fingerprint:
                        raise IdempotencyConflict(earlier["job_id"])
                    replay = self._expiring(
                        _job(db.execute("SELECT * FROM jobs WHERE id = ?", (earlier["job_id"],)).fetchone())
                    )
                    replay.replayed = True
                    return replay
                # An expired key, or one whose job was deleted, is free again.
                db.execute(
                    "INSERT OR REPLACE INTO idempotency_keys (owner, key, fingerprint, job_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (owner, idempotency.key, idempotency.fingerprint, job.id, job.created_at),
                )
            db.execute(
                "INSERT INTO jobs (id, kind, status, created_at, params, owner, batch_id, webhook, webhook_due, "
                "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.kind,
                    job.status,
                    job.created_at,
                    json.dumps(params),
                    owner,
                    batch_id,
                    json.dumps(job.webhook) if job.webhook else None,
                    # due from the start: the deliverer only takes it once it has ended
                    job.created_at if job.webhook else None,
                    idempotency.key if idempotency else None,
                ),
            )
        return job

    def create_batch(
        self,
        kind: str,
        jobs: list[tuple[str, dict]],
        batch_id: str,
        *,
        owner: str = DEFAULT_OWNER,
        webhook_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> list[Job]:
        if not jobs:
            raise ValueError("a batch needs at least one job")
        created: list[Job] = []
        for job_id, params in jobs:
            job = new_job(kind, params, job_id, owner=owner, batch_id=batch_id, webhook_url=webhook_url)
            if created and job.created_at <= created[-1].created_at:
                job.created_at = created[-1].created_at + 1e-6  # strictly increasing: the batch keeps its order
            created.append(job)
        with self._transaction() as db:  # one transaction: every job of the batch, or none
            if idempotency is not None:
                earlier = db.execute(
                    "SELECT k.fingerprint, k.job_id, j.batch_id FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id "
                    "WHERE k.owner = ? AND k.key = ? AND k.created_at >= ?",
                    (owner, idempotency.key, created[0].created_at - self.idempotency_ttl_s),
                ).fetchone()
                if earlier is not None:
                    if earlier["fingerprint"] != idempotency.fingerprint or earlier["batch_id"] is None:
                        raise IdempotencyConflict(earlier["job_id"])
                    rows = db.execute(
                        "SELECT * FROM jobs WHERE batch_id = ? ORDER BY created_at, id", (earlier["batch_id"],)
                    ).fetchall()
                    replays = [self._expiring(_job(row)) for row in rows]
                    for replay in replays:
                        replay.replayed = True
                    return replays
                db.execute(
                    "INSERT OR REPLACE INTO idempotency_keys (owner, key, fingerprint, job_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (owner, idempotency.key, idempotency.fingerprint, created[0].id, created[0].created_at),
                )
            for position, job in enumerate(created):
                db.execute(
                    "INSERT INTO jobs (id, kind, status, created_at, params, owner, batch_id, webhook, webhook_due, "
                    "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.kind,
                        job.status,
                        job.created_at,
                        json.dumps(job.params),
                        owner,
                        batch_id,
                        json.dumps(job.webhook) if job.webhook else None,
                        job.created_at if job.webhook else None,
                        idempotency.key if idempotency and position == 0 else None,
                    ),
                )
        return created

    def batch_jobs(self, batch_id: str) -> list[Job]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM jobs WHERE batch_id = ? ORDER BY created_at, id", (batch_id,)).fetchall()
        return [self._expiring(_job(row)) for row in rows]

    def report_segment(self, job_id: str, segment: int, total_segments: int, worker: str | None = None) -> None:
        owned, owner = _owned_by(worker)
        self._execute(
            f"UPDATE jobs SET segment=?, total_segments=? WHERE id=? AND status='running'{owned}",
            (segment, total_segments, job_id, *owner),
        )

    def _expiring(self, job: Job) -> Job:
        if job.is_final and job.finished_at is not None:
            job.expires_at = job.finished_at + self.retention_s
        return job

    def get(self, job_id: str) -> Job:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r}", field="job_id")
        return self._expiring(_job(row))

    def idempotent_job_id(self, owner: str, key: str) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT k.job_id FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id "
                "WHERE k.owner = ? AND k.key = ? AND k.created_at >= ?",
                (owner, key, time.time() - self.idempotency_ttl_s),
            ).fetchone()
        return row["job_id"] if row else None

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        found: dict[str, Job] = {}
        with closing(self._connect()) as db:
            for start in range(0, len(job_ids), 500):
                chunk = job_ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in db.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", chunk):
                    found[row["id"]] = self._expiring(_job(row))
        return found

    def list_jobs(
        self,
        owner: str | None,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        clauses, args = [], []
        for column, value in (("owner", owner), ("status", status), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [before[0], before[0], before[1]]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with closing(self._connect()) as db:
            rows = db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [self._expiring(_job(row)) for row in rows]

    def delete(self, job_id: str) -> Job:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError(f"no job with id {job_id!r}", field="job_id")
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM idempotency_keys WHERE job_id = ?", (job_id,))
        return _job(row)

    def sweep_expired(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._transaction() as db:
            # A job whose webhook is still being delivered is kept until that ends.
            expired = [
                row["id"]
                for row in db.execute(
                    f"SELECT id FROM jobs WHERE status IN {_FINAL} AND finished_at < ? AND webhook_due IS NULL",
                    (now - self.retention_s,),
                )
            ]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in expired])
            db.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ? OR job_id NOT IN (SELECT id FROM jobs)",
                (now - self.idempotency_ttl_s,),
            )
        return expired

    def existing(self, job_ids: list[str]) -> set[str]:
        found: set[str] = set()
        with closing(self._connect()) as db:
            for start in range(0, len(job_ids), 500):
                chunk = job_ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                found.update(row[0] for row in db.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", chunk))
        return found

    def take_due_webhooks(self, now: float, lease_s: float, limit: int = 20) -> list[Job]:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE webhook_due <= ? AND status IN {_FINAL} ORDER BY webhook_due LIMIT ?",
                (now, limit),
            ).fetchall()
            db.executemany("UPDATE jobs SET webhook_due = ? WHERE id = ?", [(now + lease_s, row["id"]) for row in rows])
        return [self._expiring(_job(row)) for row in rows]

    def update_webhook(self, job_id: str, state: dict, due_at: float | None) -> None:
        self._execute("UPDATE jobs SET webhook = ?, webhook_due = ? WHERE id = ?", (json.dumps(state), due_at, job_id))

    def claim_next(self, kind: str, worker: str, prefer_loras: frozenset[str] = frozenset()) -> Job | None:
        now = time.time()
        with self._transaction() as db:
            while True:
                # Tenants take turns: the oldest jobs of the tenant served longest ago (or never) come first, so
                # one tenant's hundred queued jobs do not starve another's one. Among the first few in that
                # order, a job whose motion LoRA this worker already holds may go first (lora_affinity).
                rows = db.execute(
                    "SELECT j.id, j.owner, j.cancel_requested, j.created_at, json_extract(j.params, '$.lora') AS lora "
                    "FROM jobs j LEFT JOIN tenant_turns t ON t.kind = j.kind AND t.owner = j.owner "
                    "WHERE j.status = 'queued' AND j.kind = ? "
                    "ORDER BY COALESCE(t.served_at, 0), j.owner, j.created_at, j.id LIMIT ?",
                    (kind, DEFAULT_LOOKAHEAD),
                ).fetchall()
                if not rows:
                    return None
                flagged = [row for row in rows if row["cancel_requested"]]
                if flagged:
                    # request_cancel ends queued jobs at once, so this is only reachable by hand-edited rows;
                    # ending them here keeps them from blocking the head of the queue.
                    for row in flagged:
                        db.execute(
                            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (now, row["id"])
                        )
                    continue
                candidates = [ClaimCandidate(row["id"], row["lora"], row["created_at"]) for row in rows]
                chosen = pick_with_affinity(candidates, prefer_loras, now)
                row = next(row for row in rows if row["id"] == chosen.job_id)
                break
            db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ?, worker = ?, "
                "attempts = attempts + 1, step = 0, progress = 0 WHERE id = ?",
                (now, now, worker, row["id"]),
            )
            db.execute(
                "INSERT INTO tenant_turns (kind, owner, served_at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, owner) DO UPDATE SET served_at = excluded.served_at",
                (kind, row["owner"], now),
            )
            return _job(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def queued_jobs_of(self, owner: str) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE owner = ? AND status = 'queued'", (owner,)).fetchone()[0]

    def take_token(self, bucket: str, rate_per_s: float, burst: int, now: float | None = None) -> float:
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute("SELECT tokens, at FROM rate_buckets WHERE bucket = ?", (bucket,)).fetchone()
            tokens = float(burst) if row is None else min(burst, row["tokens"] + max(0.0, now - row["at"]) * rate_per_s)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate_per_s
            db.execute(
                "INSERT INTO rate_buckets (bucket, tokens, at) VALUES (?, ?, ?) "
                "ON CONFLICT (bucket) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
                (bucket, tokens, now),
            )
        return wait

    def heartbeat(self, job_id: str, worker: str) -> bool:
        return (
            self._execute(
                "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND worker = ?",
                (time.time(), job_id, worker),
            )
            == 1
        )

    def reap_stale(self, lease_s: float, max_attempts: int) -> list[tuple[str, str]]:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        now = time.time()
        reaped: list[tuple[str, str]] = []
        with self._transaction() as db:
            stale = db.execute(
                "SELECT id, attempts, cancel_requested FROM jobs WHERE status = 'running' AND heartbeat_at < ? "
                "ORDER BY heartbeat_at, id",
                (now - lease_s,),
            ).fetchall()
            for row in stale:
                if row["cancel_requested"]:
                    db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (now, row["id"]))
                    reaped.append(("cancelled", row["id"]))
                elif row["attempts"] < max_attempts:
                    # created_at is kept, so the job goes back to its old place at the head of the queue.
                    db.execute(
                        "UPDATE jobs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL, "
                        "step = 0, progress = 0 WHERE id = ?",
                        (row["id"],),
                    )
                    reaped.append(("requeued", row["id"]))
                else:
                    error = {
                        "type": "worker_lost",
                        "message": f"the worker stopped responding {row['attempts']} time(s); giving up",
                    }
                    db.execute(
                        "UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                        (now, json.dumps(error), row["id"]),
                    )
                    reaped.append(("failed", row["id"]))
        return reaped

    def queue_depth(self, kind: str) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND kind = ?", (kind,)).fetchone()[0]

    def active_jobs(self, kind: str) -> int:
        with closing(self._connect()) as db:
            query = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND kind = ?"
            return db.execute(query, (kind,)).fetchone()[0]

    def report_progress(self, job_id: str, step: int, total_steps: int, worker: str | None = None) -> None:
        owned, owner = _owned_by(worker)
        self._execute(
            f"UPDATE jobs SET step=?, total_steps=?, progress=? WHERE id=? AND status='running'{owned}",
            (step, total_steps, step / total_steps if total_steps else 0.0, job_id, *owner),
        )

    def succeed(self, job_id: str, result: dict, timings: dict, worker: str | None = None) -> bool:
        owned, owner = _owned_by(worker)
        return (
            self._execute(
                "UPDATE jobs SET status='succeeded', progress=1, step=total_steps, finished_at=?, result=?, timings=? "
                f"WHERE id=? AND status='running' AND cancel_requested=0{owned}",
                (time.time(), json.dumps(result), json.dumps(timings), job_id, *owner),
            )
            == 1
        )

    def fail(self, job_id: str, error_type: str, message: str, worker: str | None = None) -> bool:
        owned, owner = _owned_by(worker)
        return (
            self._execute(
                "UPDATE jobs SET status='failed', finished_at=?, error=? "
                f"WHERE id=? AND status IN ('queued', 'running'){owned}",
                (time.time(), json.dumps({"type": error_type, "message": message}), job_id, *owner),
            )
            == 1
        )

    def mark_cancelled(self, job_id: str, worker: str | None = None) -> bool:
        owned, owner = _owned_by(worker)
        return (
            self._execute(
                "UPDATE jobs SET status='cancelled', finished_at=?, cancel_requested=1 "
                f"WHERE id=? AND status IN ('queued', 'running'){owned}",
                (time.time(), job_id, *owner),
            )
            == 1
        )

    def release(self, job_id: str, worker: str, error_type: str, message: str, max_attempts: int) -> str:
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts, cancel_requested FROM jobs WHERE id = ? AND status = 'running' AND worker = ?",
                (job_id, worker),
            ).fetchone()
            if row is None:
                return "lost"
            if row["cancel_requested"]:
                db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (now, job_id))
                return "cancelled"
            if row["attempts"] < max_attempts:
                db.execute(
                    "UPDATE jobs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL, "
                    "step = 0, progress = 0 WHERE id = ?",
                    (job_id,),
                )
                return "requeued"
            error = {"type": error_type, "message": f"{message} (on {row['attempts']} attempt(s); giving up)"}
            db.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                (now, json.dumps(error), job_id),
            )
            return "failed"

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

    def should_stop(self, job_id: str, worker: str) -> bool:
        with closing(self._connect()) as db:
            row = db.execute("SELECT cancel_requested, status, worker FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or bool(row["cancel_requested"]) or row["status"] != "running" or row["worker"] != worker


def _owned_by(worker: str | None) -> tuple[str, tuple]:
    """The extra WHERE clause (and its argument) that fences a write to the job's current worker."""
    # Only running jobs have a worker (a requeued job's is cleared), so a fenced write never hits a queued job.
    return (" AND worker=?", (worker,)) if worker is not None else ("", ())


def _job(row: sqlite3.Row) -> Job:
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
        attempts=row["attempts"],
        heartbeat_at=row["heartbeat_at"],
        owner=row["owner"],
        batch_id=row["batch_id"],
        segment=row["segment"],
        total_segments=row["total_segments"],
        webhook=json.loads(row["webhook"]) if row["webhook"] else None,
    )
