"""Job store on Redis: the cluster backend, reachable from every ingress and model replica on any node.

Keys (all under the configured prefix):

- ``job:<id>``: one hash per job. Finished jobs get a TTL so the database does not grow forever.
- ``jobs:unfinished``: sorted set of the jobs that have not ended yet, scored by ``created_at``.
- ``queue:<kind>``: sorted set of the queued jobs of one kind, scored by ``created_at``, so the oldest is
  claimed first, a re-queued job gets its old place back, and the depth an autoscaler reads is one ZCARD.
- ``jobs:running``: sorted set of the running jobs scored by their last heartbeat, so the reaper finds the
  stale ones with one range query instead of scanning every job.
- ``jobs:all`` and ``jobs:owner:<tenant>``: sorted sets of every job (and of one tenant's) by ``created_at``,
  for listing newest first. A finished job's hash expires after the retention; the sweeper then drops its
  index entries and reports its id so its files are deleted.
- ``idem:<tenant>:<key>``: the job an idempotency key created and the request's fingerprint, with a TTL.
- ``webhooks:pending``: sorted set of the jobs with an undelivered webhook, scored by when to look next.

Every transition runs as one Lua script: Redis executes scripts atomically, so the status check and the
writes to the hash and the sets cannot interleave with another replica's, two workers never claim the same
job, and a late writer can never move a finished job back. Scripts derive job and queue keys from the
prefix (the id or kind is only known inside the script); standalone Redis allows that, Redis Cluster would
need the keys under one hash tag. Timestamps and progress are computed here, not in Lua, because Lua's
number-to-string conversion would round them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import get_args
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from deployments.errors import JobNotFoundError, ServiceNotReadyError
from deployments.jobs.lora_affinity import DEFAULT_LOOKAHEAD, DEFAULT_MAX_WAIT_S
from deployments.jobs.store import (
    DEFAULT_IDEMPOTENCY_TTL_S,
    DEFAULT_OWNER,
    DEFAULT_RETENTION_S,
    Idempotency,
    IdempotencyConflict,
    Job,
    JobKind,
    new_job,
)

# Lua shared by the scripts that put jobs into a queue or take them out. Besides the queue of a kind (its
# depth is one ZCARD), every tenant has its own queue of that kind, and ``queue:<kind>:tenants`` holds the
# tenants whose queue is not empty: claiming takes turns between tenants (``queue:<kind>:turns`` scores each
# by when it was last served), so one tenant's hundred queued jobs do not starve another's one.
_QUEUE_LUA = """
local function enqueue(prefix, kind, owner, score, id)
  redis.call('ZADD', prefix .. kind, score, id)
  redis.call('ZADD', prefix .. kind .. ':t:' .. owner, score, id)
  redis.call('SADD', prefix .. kind .. ':tenants', owner)
end
local function dequeue(prefix, kind, owner, id)
  redis.call('ZREM', prefix .. kind, id)
  local own = prefix .. kind .. ':t:' .. owner
  redis.call('ZREM', own, id)
  if redis.call('ZCARD', own) == 0 then redis.call('SREM', prefix .. kind .. ':tenants', owner) end
end
"""

# KEYS: job hash, unfinished index, queue, owner index, all index, idempotency key, pending webhooks.
# ARGV: job id, created_at, record (JSON object of strings), fingerprint ('' = no key), key TTL,
# has webhook ('1'/'0'), job key prefix, queue key prefix, kind, owner. Returns the earlier entry (JSON) when
# the key is taken by a job that still exists, else creates the job and returns false.
_CREATE = (
    _QUEUE_LUA
    + """
if ARGV[4] ~= '' then
  local earlier = redis.call('GET', KEYS[6])
  if earlier then
    local entry = cjson.decode(earlier)
    if redis.call('EXISTS', ARGV[7] .. entry['job_id']) == 1 then return earlier end
  end
  redis.call('SET', KEYS[6], cjson.encode({job_id = ARGV[1], fingerprint = ARGV[4]}), 'EX', ARGV[5])
end
for name, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], name, value) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
enqueue(ARGV[8], ARGV[9], ARGV[10], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[7], ARGV[2], ARGV[1]) end
return false
"""
)

# KEYS: pending webhooks. ARGV: job key prefix, now, lease until, look again at, limit.
# Ended jobs that are due are leased and returned; unfinished ones are looked at again later; gone ones dropped.
_TAKE_WEBHOOKS = """
local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[5]))) do
  local status = redis.call('HGET', ARGV[1] .. id, 'status')
  if not status then
    redis.call('ZREM', KEYS[1], id)
  elseif status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    table.insert(taken, id)
  else
    redis.call('ZADD', KEYS[1], ARGV[4], id)
  end
end
return taken
"""
# KEYS: job hash, pending webhooks. ARGV: job id, state (JSON), next try ('' = none).
# A deleted or expired job's hash is never re-created by a late delivery report.
_UPDATE_WEBHOOK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'webhook', ARGV[2])
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[1]) else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
return 1
"""
# KEYS: the bucket (hash: tokens, at). ARGV: now, rate per second, burst. A token bucket: returns 0 when a
# token was taken, else the seconds until one will be there (as a string: Lua numbers lose precision).
_TAKE_TOKEN = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""
# How soon an unfinished job with a webhook is looked at again.
_WEBHOOK_RECHECK_S = 1.0

# KEYS: job hash, unfinished index, running set. ARGV: job id, rules (JSON), TTL, queue key prefix.
# Rules are tried in order; the first whose "from" holds the job's status (and whose worker, if it names
# one, is the job's worker) is applied and its 1-based index returned (0: none applied). A missing hash
# (unknown or expired job) is never re-created by a late writer.
_TRANSITION = (
    _QUEUE_LUA
    + """
local fields = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'worker', 'kind', 'owner')
local status = fields[1]
if not status then return 0 end
local cancel_requested = fields[2] == '1'
for i, rule in ipairs(cjson.decode(ARGV[2])) do
  local allowed = false
  for _, from in ipairs(rule['from']) do
    if from == status then allowed = true end
  end
  if rule['worker'] ~= '' and rule['worker'] ~= fields[3] then allowed = false end
  if allowed and not (rule['unless_cancel_requested'] and cancel_requested) then
    for name, value in pairs(rule['set']) do redis.call('HSET', KEYS[1], name, value) end
    if rule['copy'] then
      for name, source in pairs(rule['copy']) do
        redis.call('HSET', KEYS[1], name, redis.call('HGET', KEYS[1], source))
      end
    end
    if rule['final'] then
      redis.call('ZREM', KEYS[2], ARGV[1])
      redis.call('ZREM', KEYS[3], ARGV[1])
      dequeue(ARGV[4], fields[4], fields[5] or 'local', ARGV[1])
      redis.call('EXPIRE', KEYS[1], ARGV[3])
    end
    return i
  end
end
return 0
"""
)

# KEYS: queue of the kind, unfinished index, running set. ARGV: job key prefix, worker, now, TTL, queue key
# prefix, kind, held LoRAs (JSON list), max wait of the head (s), lookahead. Returns the claimed job's hash
# (HGETALL), or nil when the queue is empty. Within the chosen tenant's queue, the first job (of the first
# `lookahead`) that needs no LoRA switch goes first, unless the head has waited `max wait` (lora_affinity).
_CLAIM = (
    _QUEUE_LUA
    + """
local tenants_key, turns_key = KEYS[1] .. ':tenants', KEYS[1] .. ':turns'
local held = {}
for _, name in ipairs(cjson.decode(ARGV[7])) do held[name] = true end
-- The next job: the oldest of the tenant served longest ago (or never); jobs queued before tenants had
-- queues of their own are only in the kind's queue, and are taken from there once no tenant queue is left.
local function next_job()
  while true do
    local tenants = redis.call('SMEMBERS', tenants_key)
    if #tenants == 0 then
      local head = redis.call('ZRANGE', KEYS[1], 0, 0)
      if #head == 0 then return nil end
      return head[1], redis.call('HGET', ARGV[1] .. head[1], 'owner') or 'local'
    end
    local best, best_turn = nil, nil
    for _, tenant in ipairs(tenants) do
      local turn = tonumber(redis.call('ZSCORE', turns_key, tenant) or '0')
      if best == nil or turn < best_turn or (turn == best_turn and tenant < best) then
        best, best_turn = tenant, turn
      end
    end
    local own = KEYS[1] .. ':t:' .. best
    local head = redis.call('ZRANGE', own, 0, tonumber(ARGV[9]) - 1, 'WITHSCORES')
    if #head > 0 then
      if tonumber(ARGV[3]) - tonumber(head[2]) >= tonumber(ARGV[8]) then return head[1], best end
      for i = 1, #head, 2 do
        local lora = redis.call('HGET', ARGV[1] .. head[i], 'lora')
        if not lora or held[lora] then return head[i], best end
      end
      return head[1], best
    end
    redis.call('SREM', tenants_key, best)
  end
end
while true do
  local id, owner = next_job()
  if id == nil then return false end
  local key = ARGV[1] .. id
  dequeue(ARGV[5], ARGV[6], owner, id)
  local fields = redis.call('HMGET', key, 'status', 'cancel_requested')
  -- Entries whose job is gone or no longer queued are dropped; the transitions keep the queue exact, so
  -- this only cleans up after hand edits.
  if fields[1] == 'queued' then
    if fields[2] == '1' then
      -- request_cancel ends queued jobs at once, so only hand edits get here: end it, do not hand it out.
      redis.call('HSET', key, 'status', 'cancelled', 'finished_at', ARGV[3])
      redis.call('ZREM', KEYS[2], id)
      redis.call('EXPIRE', key, ARGV[4])
    else
      redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[3], 'heartbeat_at', ARGV[3],
                 'worker', ARGV[2], 'step', '0', 'progress', '0.0')
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('ZADD', KEYS[3], ARGV[3], id)
      redis.call('ZADD', turns_key, ARGV[3], owner)
      return redis.call('HGETALL', key)
    end
  end
end
"""
)

# KEYS: job hash, running set. ARGV: job id, worker, now.
_HEARTBEAT = """
local fields = redis.call('HMGET', KEYS[1], 'status', 'worker')
if fields[1] ~= 'running' or fields[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: job hash, running set, unfinished index. ARGV: job id, worker, queue key prefix, now, max attempts,
# TTL, error type, message. Returns the outcome: requeued, failed, cancelled or lost.
_RELEASE = (
    _QUEUE_LUA
    + """
local fields = redis.call('HMGET', KEYS[1], 'status', 'worker', 'cancel_requested', 'attempts', 'kind', 'created_at',
                          'owner')
if fields[1] ~= 'running' or fields[2] ~= ARGV[2] then return 'lost' end
redis.call('ZREM', KEYS[2], ARGV[1])
local attempts = tonumber(fields[4]) or 0
if fields[3] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[4])
elseif attempts < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'step', '0', 'progress', '0.0')
  redis.call('HDEL', KEYS[1], 'worker', 'started_at', 'heartbeat_at')
  enqueue(ARGV[3], fields[5], fields[7] or 'local', fields[6], ARGV[1])
  return 'requeued'
else
  local message = ARGV[8] .. ' (on ' .. tostring(attempts) .. ' attempt(s); giving up)'
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[4],
             'error', cjson.encode({type = ARGV[7], message = message}))
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[6])
if fields[3] == '1' then return 'cancelled' end
return 'failed'
"""
)

# KEYS: running set, unfinished index. ARGV: job key prefix, queue key prefix, cutoff, now, max attempts, TTL.
# Returns a flat list: action, job id, action, job id, ... in order of their last heartbeat.
_REAP = (
    _QUEUE_LUA
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  local fields = redis.call('HMGET', key, 'status', 'cancel_requested', 'attempts', 'kind', 'created_at', 'owner')
  if fields[1] == 'running' then
    local attempts = tonumber(fields[3]) or 0
    local action
    if fields[2] == '1' then
      action = 'cancelled'
      redis.call('HSET', key, 'status', 'cancelled', 'finished_at', ARGV[4])
    elseif attempts < tonumber(ARGV[5]) then
      action = 'requeued'
      redis.call('HSET', key, 'status', 'queued', 'step', '0', 'progress', '0.0')
      redis.call('HDEL', key, 'worker', 'started_at', 'heartbeat_at')
      -- Scored by created_at again: the job gets its old place at the head of its queue.
      enqueue(ARGV[2], fields[4], fields[6] or 'local', fields[5], id)
    else
      action = 'failed'
      local message = 'the worker stopped responding ' .. tostring(attempts) .. ' time(s); giving up'
      redis.call('HSET', key, 'status', 'failed', 'finished_at', ARGV[4],
                 'error', cjson.encode({type = 'worker_lost', message = message}))
    end
    if action ~= 'requeued' then
      redis.call('ZREM', KEYS[2], id)
      redis.call('EXPIRE', key, ARGV[6])
    end
    table.insert(out, action)
    table.insert(out, id)
  end
end
return out
"""
)


def _rule(
    sources: list[str],
    values: dict[str, str],
    *,
    final: bool = False,
    unless_cancel_requested: bool = False,
    copy: dict[str, str] | None = None,
    worker: str | None = None,
) -> dict:
    return {
        "from": sources,
        "set": values,
        "final": final,
        "unless_cancel_requested": unless_cancel_requested,
        "copy": copy or {},
        "worker": worker or "",  # "" = any worker; JSON null would decode to a Lua sentinel, not nil
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
        retention_s: float = DEFAULT_RETENTION_S,
        idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
        socket_timeout_s: float = 5.0,
    ) -> None:
        if retention_s <= 0 or idempotency_ttl_s <= 0:
            raise ValueError("retention_s and idempotency_ttl_s must be positive")
        self.url = _redacted(url)
        self.key_prefix = key_prefix
        self.retention_s = retention_s
        # EXPIRE takes whole seconds; rounding up never expires a record early
        self.finished_job_ttl_s = max(1, int(-(-retention_s // 1)))
        self.idempotency_ttl_s = max(1, int(-(-idempotency_ttl_s // 1)))
        self._unfinished_key = f"{key_prefix}jobs:unfinished"
        self._running_key = f"{key_prefix}jobs:running"
        self._queue_prefix = f"{key_prefix}queue:"
        self._all_key = f"{key_prefix}jobs:all"
        self._webhooks_key = f"{key_prefix}webhooks:pending"
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
        self._claim = self._redis.register_script(_CLAIM)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._reap = self._redis.register_script(_REAP)
        self._release = self._redis.register_script(_RELEASE)
        self._create = self._redis.register_script(_CREATE)
        self._take_webhooks = self._redis.register_script(_TAKE_WEBHOOKS)
        self._update_webhook = self._redis.register_script(_UPDATE_WEBHOOK)
        self._take_token = self._redis.register_script(_TAKE_TOKEN)

    def close(self) -> None:
        self._redis.close()

    def _job_key(self, job_id: str) -> str:
        return f"{self.key_prefix}job:{job_id}"

    def _owner_key(self, owner: str) -> str:
        return f"{self.key_prefix}jobs:owner:{owner}"

    def _idempotency_key(self, owner: str, key: str) -> str:
        return f"{self.key_prefix}idem:{owner}:{key}"

    def _tenant_queue_key(self, kind: str, owner: str) -> str:
        return f"{self._queue_prefix}{kind}:t:{owner}"

    def queued_jobs_of(self, owner: str) -> int:
        with self._reachable():
            pipe = self._redis.pipeline(transaction=False)
            for kind in get_args(JobKind):
                pipe.zcard(self._tenant_queue_key(kind, owner))
            return sum(int(count) for count in pipe.execute())

    def take_token(self, bucket: str, rate_per_s: float, burst: int, now: float | None = None) -> float:
        now = time.time() if now is None else now
        with self._reachable():
            wait = self._take_token(
                keys=[f"{self.key_prefix}bucket:{bucket}"], args=[repr(now), repr(rate_per_s), burst]
            )
        return float(wait)

    def queue_key(self, kind: str) -> str:
        """The sorted set of the queued jobs of ``kind`` (ZCARD is the queue depth, e.g. for autoscaling)."""
        return f"{self._queue_prefix}{kind}"

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
                    keys=[self._job_key(job_id), self._unfinished_key, self._running_key],
                    args=[job_id, json.dumps(list(rules)), self.finished_job_ttl_s, self._queue_prefix],
                )
            )

    def ping(self) -> None:
        with self._reachable():
            self._redis.ping()

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
        keys, args = self._create_call(job, idempotency)
        # One script: the key check, the hash and its index and queue entries appear together. Once the server
        # has acknowledged it, every replica sees the job; surviving a Redis restart is the server's
        # appendonly/fsync setting.
        with self._reachable():
            earlier = self._create(keys=keys, args=args)
        if earlier:
            entry = json.loads(_text(earlier))
            if entry["fingerprint"] != idempotency.fingerprint:
                raise IdempotencyConflict(entry["job_id"])
            replay = self.get(entry["job_id"])
            replay.replayed = True
            return replay
        return job

    def _create_call(self, job: Job, idempotency: Idempotency | None) -> tuple[list, list]:
        """The keys and arguments of the create script for ``job`` (``create`` and ``create_batch`` share it)."""
        record = {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "created_at": repr(job.created_at),
            "params": json.dumps(job.params),
            "progress": "0.0",
            "step": "0",
            "total_steps": "0",
            "cancel_requested": "0",
            "timings": "{}",
            "attempts": "0",
            "owner": job.owner,
        }
        if job.batch_id is not None:
            record["batch_id"] = job.batch_id
        if isinstance(job.params.get("lora"), str):  # read by the claim script's LoRA affinity
            record["lora"] = job.params["lora"]
        if job.webhook is not None:
            record["webhook"] = json.dumps(job.webhook)
        idempotency_key = (
            self._idempotency_key(job.owner, idempotency.key) if idempotency else self._idempotency_key("", "")
        )
        if idempotency is not None:
            record["idempotency_key"] = idempotency_key
        return (
            [
                self._job_key(job.id),
                self._unfinished_key,
                self.queue_key(job.kind),
                self._owner_key(job.owner),
                self._all_key,
                idempotency_key,
                self._webhooks_key,
            ],
            [
                job.id,
                repr(job.created_at),
                json.dumps(record),
                idempotency.fingerprint if idempotency else "",
                self.idempotency_ttl_s,
                "1" if job.webhook else "0",
                f"{self.key_prefix}job:",
                self._queue_prefix,
                job.kind,
                job.owner,
            ],
        )

    def _batch_key(self, batch_id: str) -> str:
        return f"{self.key_prefix}batch:{batch_id}"

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
        calls = [self._create_call(job, idempotency if index == 0 else None) for index, job in enumerate(created)]
        key = self._idempotency_key(owner, idempotency.key) if idempotency else None
        # MULTI/EXEC runs the per-job create scripts and the batch's list as one unit: no replica sees part of
        # a batch, and nothing is left half-created. WATCH on the idempotency key turns a racing request with
        # the same key into a retry that then finds the key taken.
        with self._reachable(), self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if key is not None:
                        pipe.watch(key)
                        earlier = pipe.get(key)
                        if earlier:
                            entry = json.loads(_text(earlier))
                            batch_of_earlier = pipe.hget(self._job_key(entry["job_id"]), "batch_id")
                            if pipe.exists(self._job_key(entry["job_id"])):
                                pipe.reset()
                                if entry["fingerprint"] != idempotency.fingerprint or not batch_of_earlier:
                                    raise IdempotencyConflict(entry["job_id"])
                                replays = self.batch_jobs(_text(batch_of_earlier))
                                for replay in replays:
                                    replay.replayed = True
                                return replays
                    pipe.multi()
                    for keys, args in calls:
                        self._create(keys=keys, args=args, client=pipe)
                    pipe.rpush(self._batch_key(batch_id), *(job.id for job in created))
                    # the list outlives its jobs (they expire a retention after they end); a day more is plenty
                    pipe.expire(self._batch_key(batch_id), 2 * self.finished_job_ttl_s + 86_400)
                    pipe.execute()
                    return created
                except redis.WatchError:
                    continue

    def batch_jobs(self, batch_id: str) -> list[Job]:
        with self._reachable():
            ids = [_text(job_id) for job_id in self._redis.lrange(self._batch_key(batch_id), 0, -1)]
            pipe = self._redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self._job_key(job_id))
            rows = pipe.execute() if ids else []
        jobs = [self._expiring(_job(row)) for row in rows if row]
        if not jobs and ids:
            self._redis.delete(self._batch_key(batch_id))  # every job expired or was deleted
        return jobs

    def report_segment(self, job_id: str, segment: int, total_segments: int, worker: str | None = None) -> None:
        values = {"segment": str(segment), "total_segments": str(total_segments)}
        self._apply(job_id, _rule(["running"], values, worker=worker))

    def _expiring(self, job: Job) -> Job:
        if job.is_final and job.finished_at is not None:
            job.expires_at = job.finished_at + self.finished_job_ttl_s
        return job

    def get(self, job_id: str) -> Job:
        with self._reachable():
            row = self._redis.hgetall(self._job_key(job_id))
        if not row:
            raise JobNotFoundError(f"no job with id {job_id!r}", field="job_id")
        return self._expiring(_job(row))

    def idempotent_job_id(self, owner: str, key: str) -> str | None:
        with self._reachable():
            earlier = self._redis.get(self._idempotency_key(owner, key))
            if not earlier:
                return None
            job_id = json.loads(_text(earlier))["job_id"]
            return job_id if self._redis.exists(self._job_key(job_id)) else None

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        with self._reachable():
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hgetall(self._job_key(job_id))
            rows = pipe.execute() if job_ids else []
        return {row["id"]: self._expiring(_job(row)) for row in rows if row}

    def list_jobs(
        self,
        owner: str | None,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        index = self._all_key if owner is None else self._owner_key(owner)
        found: list[Job] = []
        high = "+inf" if before is None else repr(before[0])
        page = max(limit * 2, 50)
        with self._reachable():
            while len(found) < limit:
                entries = self._redis.zrevrangebyscore(index, high, "-inf", start=0, num=page, withscores=True)
                # ties on created_at come back by member, descending, like the SQLite store's (created_at, id)
                entries = [(_text(member), score) for member, score in entries]
                if before is not None:
                    entries = [(m, sc) for m, sc in entries if (sc, m) < (before[0], before[1])]
                if not entries:
                    break
                pipe = self._redis.pipeline(transaction=False)
                for member, _ in entries:
                    pipe.hgetall(self._job_key(member))
                for row in pipe.execute():
                    if not row:
                        continue  # expired; the sweeper drops its index entry
                    job = self._expiring(_job(row))
                    if (status is None or job.status == status) and (kind is None or job.kind == kind):
                        found.append(job)
                        if len(found) == limit:
                            break
                last_member, last_score = entries[-1]
                before = (last_score, last_member)
                high = repr(last_score)
        return found

    def delete(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self._reachable():
            idempotency_key = self._redis.hget(self._job_key(job_id), "idempotency_key")
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._job_key(job_id))
            for index in (
                self._unfinished_key,
                self._running_key,
                self.queue_key(job.kind),
                self._tenant_queue_key(job.kind, job.owner),
                self._owner_key(job.owner),
                self._all_key,
                self._webhooks_key,
            ):
                pipe.zrem(index, job_id)
            if idempotency_key:
                pipe.delete(_text(idempotency_key))
            pipe.execute()
        return job

    def sweep_expired(self, now: float | None = None) -> list[str]:
        """Hashes expire by themselves (TTL); this drops the index entries they leave behind."""
        now = time.time() if now is None else now
        gone: list[str] = []
        with self._reachable():
            # only jobs created before the retention began can have expired
            candidates = [
                _text(m) for m in self._redis.zrangebyscore(self._all_key, "-inf", repr(now - self.retention_s))
            ]
            for start in range(0, len(candidates), 500):
                chunk = candidates[start : start + 500]
                pipe = self._redis.pipeline(transaction=False)
                for member in chunk:
                    pipe.hget(self._job_key(member), "owner")
                owners = pipe.execute()
                expired = [member for member, owner in zip(chunk, owners, strict=True) if owner is None]
                if not expired:
                    continue
                # The owner is gone with the hash: the owner sets are cleaned by scanning them.
                pipe = self._redis.pipeline(transaction=False)
                pipe.zrem(self._all_key, *expired)
                pipe.zrem(self._webhooks_key, *expired)
                pipe.execute()
                gone += expired
            if gone:
                for owner_key in self._redis.scan_iter(match=f"{self.key_prefix}jobs:owner:*", count=100):
                    self._redis.zrem(owner_key, *gone)
        return gone

    def existing(self, job_ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self._reachable():
            for start in range(0, len(job_ids), 500):
                chunk = job_ids[start : start + 500]
                pipe = self._redis.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.exists(self._job_key(job_id))
                found.update(job_id for job_id, hit in zip(chunk, pipe.execute(), strict=True) if hit)
        return found

    def take_due_webhooks(self, now: float, lease_s: float, limit: int = 20) -> list[Job]:
        with self._reachable():
            taken = self._take_webhooks(
                keys=[self._webhooks_key],
                args=[f"{self.key_prefix}job:", repr(now), repr(now + lease_s), repr(now + _WEBHOOK_RECHECK_S), limit],
            )
        jobs = []
        for job_id in taken:
            try:
                jobs.append(self.get(_text(job_id)))
            except JobNotFoundError:
                continue
        return jobs

    def update_webhook(self, job_id: str, state: dict, due_at: float | None) -> None:
        with self._reachable():
            self._update_webhook(
                keys=[self._job_key(job_id), self._webhooks_key],
                args=[job_id, json.dumps(state), "" if due_at is None else repr(due_at)],
            )

    def claim_next(self, kind: str, worker: str, prefer_loras: frozenset[str] = frozenset()) -> Job | None:
        with self._reachable():
            fields = self._claim(
                keys=[self.queue_key(kind), self._unfinished_key, self._running_key],
                args=[
                    f"{self.key_prefix}job:",
                    worker,
                    repr(time.time()),
                    self.finished_job_ttl_s,
                    self._queue_prefix,
                    kind,
                    json.dumps(sorted(prefer_loras)),
                    DEFAULT_MAX_WAIT_S,
                    DEFAULT_LOOKAHEAD,
                ],
            )
        if not fields:
            return None
        return _job(dict(zip(fields[::2], fields[1::2], strict=True)))

    def heartbeat(self, job_id: str, worker: str) -> bool:
        with self._reachable():
            renewed = self._heartbeat(
                keys=[self._job_key(job_id), self._running_key], args=[job_id, worker, repr(time.time())]
            )
        return int(renewed) == 1

    def reap_stale(self, lease_s: float, max_attempts: int) -> list[tuple[str, str]]:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        now = time.time()
        with self._reachable():
            flat = self._reap(
                keys=[self._running_key, self._unfinished_key],
                args=[
                    f"{self.key_prefix}job:",
                    self._queue_prefix,
                    repr(now - lease_s),
                    repr(now),
                    max_attempts,
                    self.finished_job_ttl_s,
                ],
            )
        return list(zip(flat[::2], flat[1::2], strict=True))

    def queue_depth(self, kind: str) -> int:
        with self._reachable():
            return int(self._redis.zcard(self.queue_key(kind)))

    def active_jobs(self, kind: str) -> int:
        """Queued plus running jobs of ``kind``; the running set spans kinds, so its members are looked up."""
        with self._reachable():
            running = self._redis.zrange(self._running_key, 0, -1)
            pipe = self._redis.pipeline(transaction=False)
            for job_id in running:
                pipe.hget(self._job_key(_text(job_id)), "kind")
            kinds = pipe.execute() if running else []
            return int(self._redis.zcard(self.queue_key(kind))) + sum(
                1 for k in kinds if k is not None and _text(k) == kind
            )

    def report_progress(self, job_id: str, step: int, total_steps: int, worker: str | None = None) -> None:
        progress = step / total_steps if total_steps else 0.0
        values = {"step": str(step), "total_steps": str(total_steps), "progress": repr(progress)}
        self._apply(job_id, _rule(["running"], values, worker=worker))

    def succeed(self, job_id: str, result: dict, timings: dict, worker: str | None = None) -> bool:
        values = {
            "status": "succeeded",
            "progress": "1.0",
            "finished_at": repr(time.time()),
            "result": json.dumps(result),
            "timings": json.dumps(timings),
        }
        rule = _rule(
            ["running"], values, final=True, copy={"step": "total_steps"}, worker=worker, unless_cancel_requested=True
        )
        return self._apply(job_id, rule) == 1

    def fail(self, job_id: str, error_type: str, message: str, worker: str | None = None) -> bool:
        values = {
            "status": "failed",
            "finished_at": repr(time.time()),
            "error": json.dumps({"type": error_type, "message": message}),
        }
        return self._apply(job_id, _rule(["queued", "running"], values, final=True, worker=worker)) == 1

    def mark_cancelled(self, job_id: str, worker: str | None = None) -> bool:
        values = {"status": "cancelled", "finished_at": repr(time.time()), "cancel_requested": "1"}
        return self._apply(job_id, _rule(["queued", "running"], values, final=True, worker=worker)) == 1

    def release(self, job_id: str, worker: str, error_type: str, message: str, max_attempts: int) -> str:
        with self._reachable():
            outcome = self._release(
                keys=[self._job_key(job_id), self._running_key, self._unfinished_key],
                args=[job_id, worker, self._queue_prefix, repr(time.time()), max_attempts, self.finished_job_ttl_s]
                + [error_type, message],
            )
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

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

    def should_stop(self, job_id: str, worker: str) -> bool:
        with self._reachable():
            cancel, status, owner = self._redis.hmget(self._job_key(job_id), "cancel_requested", "status", "worker")
        return status is None or cancel == "1" or status != "running" or owner != worker


def _job(row: dict[str, str]) -> Job:
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
        attempts=int(row.get("attempts", "0")),  # hashes written before the queue have no attempts field
        heartbeat_at=float(row["heartbeat_at"]) if "heartbeat_at" in row else None,
        owner=row.get("owner", DEFAULT_OWNER),
        batch_id=row.get("batch_id"),
        segment=int(row["segment"]) if "segment" in row else None,
        total_segments=int(row["total_segments"]) if "total_segments" in row else None,
        webhook=json.loads(row["webhook"]) if "webhook" in row else None,
    )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
