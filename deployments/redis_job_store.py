"""Job store on Redis: the cluster backend, reachable from every ingress and model replica on any node.

One hash per job (``<prefix>job:<id>``) and a sorted set of the jobs that have not ended yet
(``<prefix>jobs:unfinished``, scored by ``created_at``) so a reaper can later find jobs whose worker died.
Finished jobs get a TTL so the database does not grow forever.

Every conditional transition runs as one Lua script: Redis executes scripts atomically, so the status
check and the write cannot interleave with another replica's write, and a late writer can never move a
finished job back. Timestamps and progress are computed here, not in Lua, because Lua's number-to-string
conversion would round them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from deployments.errors import JobNotFoundError, ServiceNotReadyError
from deployments.job_store import Job, new_job

DEFAULT_FINISHED_JOB_TTL_S = 7 * 24 * 3600

# Rules are tried in order; the first whose "from" holds the job's status is applied and its 1-based index
# returned (0: none applied). A missing hash (unknown or expired job) is never re-created by a late writer.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local cancel_requested = redis.call('HGET', KEYS[1], 'cancel_requested') == '1'
for i, rule in ipairs(cjson.decode(ARGV[2])) do
  local allowed = false
  for _, from in ipairs(rule['from']) do
    if from == status then allowed = true end
  end
  if allowed and not (rule['unless_cancel_requested'] and cancel_requested) then
    for name, value in pairs(rule['set']) do redis.call('HSET', KEYS[1], name, value) end
    if rule['copy'] then
      for name, source in pairs(rule['copy']) do
        redis.call('HSET', KEYS[1], name, redis.call('HGET', KEYS[1], source))
      end
    end
    if rule['final'] then
      redis.call('ZREM', KEYS[2], ARGV[1])
      redis.call('EXPIRE', KEYS[1], ARGV[3])
    end
    return i
  end
end
return 0
"""


def _rule(
    sources: list[str],
    values: dict[str, str],
    *,
    final: bool = False,
    unless_cancel_requested: bool = False,
    copy: dict[str, str] | None = None,
) -> dict:
    return {
        "from": sources,
        "set": values,
        "final": final,
        "unless_cancel_requested": unless_cancel_requested,
        "copy": copy or {},
    }


def _redacted(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisJobStore:
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "vividflow:",
        finished_job_ttl_s: int = DEFAULT_FINISHED_JOB_TTL_S,
        socket_timeout_s: float = 5.0,
    ) -> None:
        if finished_job_ttl_s <= 0:
            raise ValueError("finished_job_ttl_s must be positive")
        self.url = _redacted(url)
        self.key_prefix = key_prefix
        self.finished_job_ttl_s = finished_job_ttl_s
        self._unfinished_key = f"{key_prefix}jobs:unfinished"
        # redis-py's default retries 10 times, so a dead server would block a request for a minute;
        # one quick retry still rides over a dropped idle connection. Connecting is lazy, so replicas
        # may start before Redis does and report it through ``ping`` (the health check).
        self._redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=min(socket_timeout_s, 2.0),
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            health_check_interval=30,
        )
        self._transition = self._redis.register_script(_TRANSITION)

    def close(self) -> None:
        self._redis.close()

    def _job_key(self, job_id: str) -> str:
        return f"{self.key_prefix}job:{job_id}"

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        # A 503 with the store's address beats a bare socket error surfacing as a 500.
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceNotReadyError(f"job store at {self.url} cannot be reached: {exc}") from exc

    def _apply(self, job_id: str, *rules: dict) -> int:
        with self._reachable():
            return int(
                self._transition(
                    keys=[self._job_key(job_id), self._unfinished_key],
                    args=[job_id, json.dumps(list(rules)), self.finished_job_ttl_s],
                )
            )

    def ping(self) -> None:
        with self._reachable():
            self._redis.ping()

    def create(self, kind: str, params: dict) -> Job:
        job = new_job(kind, params)
        record = {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "created_at": repr(job.created_at),
            "params": json.dumps(params),
            "progress": "0.0",
            "step": "0",
            "total_steps": "0",
            "cancel_requested": "0",
            "timings": "{}",
        }
        # MULTI/EXEC: the hash and its index entry appear together. Once the server has acknowledged it,
        # every replica sees the job; surviving a Redis restart is the server's appendonly/fsync setting.
        with self._reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._job_key(job.id), mapping=record)
            pipe.zadd(self._unfinished_key, {job.id: job.created_at})
            pipe.execute()
        return job

    def get(self, job_id: str) -> Job:
        with self._reachable():
            row = self._redis.hgetall(self._job_key(job_id))
        if not row:
            raise JobNotFoundError(f"no job with id {job_id!r}", field="job_id")
        return Job(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            progress=float(row["progress"]),
            step=int(row["step"]),
            total_steps=int(row["total_steps"]),
            created_at=float(row["created_at"]),
            started_at=float(row["started_at"]) if "started_at" in row else None,
            finished_at=float(row["finished_at"]) if "finished_at" in row else None,
            params=json.loads(row["params"]),
            error=json.loads(row["error"]) if "error" in row else None,
            result=json.loads(row["result"]) if "result" in row else None,
            cancel_requested=row["cancel_requested"] == "1",
            worker=row.get("worker"),
            timings=json.loads(row["timings"]),
        )

    def start(self, job_id: str, worker: str, total_steps: int) -> bool:
        values = {
            "status": "running",
            "started_at": repr(time.time()),
            "worker": worker,
            "total_steps": str(total_steps),
        }
        return self._apply(job_id, _rule(["queued"], values, unless_cancel_requested=True)) == 1

    def report_progress(self, job_id: str, step: int, total_steps: int) -> None:
        progress = step / total_steps if total_steps else 0.0
        values = {"step": str(step), "total_steps": str(total_steps), "progress": repr(progress)}
        self._apply(job_id, _rule(["running"], values))

    def succeed(self, job_id: str, result: dict, timings: dict) -> bool:
        values = {
            "status": "succeeded",
            "progress": "1.0",
            "finished_at": repr(time.time()),
            "result": json.dumps(result),
            "timings": json.dumps(timings),
        }
        return self._apply(job_id, _rule(["running"], values, final=True, copy={"step": "total_steps"})) == 1

    def fail(self, job_id: str, error_type: str, message: str) -> bool:
        values = {
            "status": "failed",
            "finished_at": repr(time.time()),
            "error": json.dumps({"type": error_type, "message": message}),
        }
        return self._apply(job_id, _rule(["queued", "running"], values, final=True)) == 1

    def mark_cancelled(self, job_id: str) -> bool:
        values = {"status": "cancelled", "finished_at": repr(time.time()), "cancel_requested": "1"}
        return self._apply(job_id, _rule(["queued", "running"], values, final=True)) == 1

    def request_cancel(self, job_id: str) -> Job:
        cancel_now = {"status": "cancelled", "finished_at": repr(time.time()), "cancel_requested": "1"}
        self._apply(
            job_id,
            _rule(["queued"], cancel_now, final=True),
            _rule(["running"], {"cancel_requested": "1"}),
        )
        return self.get(job_id)

    def is_cancel_requested(self, job_id: str) -> bool:
        with self._reachable():
            return self._redis.hget(self._job_key(job_id), "cancel_requested") == "1"
