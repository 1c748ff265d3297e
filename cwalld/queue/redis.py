"""The Redis queue: AI jobs shared by every cwalld process on a Redis server (≥ 6.2).

Why lists and sorted sets rather than a stream: a job here is just a confession id, retried later
with a delay and deduplicated while live. Streams would still need a sorted set for delays and a
set for dedup, and XAUTOCLAIM cannot move a job back to "delayed". So:

    wait     LIST   ids ready to run (LPUSH in, taken from the right end)
    active   LIST   ids being run
    lease    ZSET   id → when its consumer is presumed dead (server time, ms)
    owner    HASH   id → the token of the attempt that holds it (process nonce : attempt)
    delayed  ZSET   id → when its retry is due
    live     SET    ids waiting, active or delayed: one job per confession
    attempts HASH   id → attempts started
    wake     LIST   wake-up tokens for blocked fetchers (bounded; a lost one costs ≤ 1 s)
    marker   STRING set while Redis holds this queue's data: gone means FLUSHALL or an empty restart
    completed, fallback, held, failed  ZSET  id → finished at (bounded by age and count)

Every move between states is one Lua script using the server's clock, so processes on different
machines agree and nothing is half-moved. Taking a job gives it a lease and an owner token in the
same script; FINISH, RETRY and RELEASE change a job only for the token that holds it, so a run
that lost its lease (a process stalled past it, then woke) changes nothing and logs
``job_lease_lost``. The lease is derived from ``job_timeout`` each time it is given, so a reload
applies to the next take.

Each process runs one fetcher, taking jobs only for its free ``concurrency`` slots, as many as
it has free in one script. On an empty line it blocks — on a connection of its own, with a
socket timeout above the block time, so a Redis that goes silent is noticed — in BLPOP on
``wake``, never in a command that moves a job: cancelling or losing that call loses nothing.
One maintenance loop promotes due retries every 0.2 s (so they fire on an idle queue) and takes
over jobs whose lease expired (``stalled``). A job is acknowledged only after ``run_attempt``
returned, i.e. after its effect is committed to SQLite; the handler is idempotent, so a job that
runs twice after a takeover changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import backoff
import structlog
from redis.exceptions import RedisError

from cwalld import metrics, tasks
from cwalld.config import Queue as QueueSettings
from cwalld.queue import FINISHED, Handler, run_attempt
from cwalld.redis_client import Coalesced

log = structlog.get_logger("cwalld.queue")

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
WAKE_MAX = 16  # wake-up tokens kept: enough for every blocked fetcher, bounded with none
_WAKE = f"local function wake(key) redis.call('LPUSH', key, 1) redis.call('LTRIM', key, 0, {WAKE_MAX - 1}) end "

# KEYS: live, wait, wake, then every finished record  ARGV: id
ENQUEUE = _WAKE + """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 4, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('LPUSH', KEYS[2], ARGV[1])
wake(KEYS[3])
return 1
"""
# KEYS: wait, active, lease, attempts, owner  ARGV: n, lease_ms, nonce → {id, attempt, …}, up to n
TAKE_MANY = _NOW + """
local out = {}
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), id)
  local attempt = redis.call('HINCRBY', KEYS[4], id, 1)
  redis.call('HSET', KEYS[5], id, ARGV[3] .. ':' .. attempt)
  out[#out + 1] = id
  out[#out + 1] = attempt
end
return out
"""
_OWNS = "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end "
# KEYS: owner, active, lease, live, attempts, finished  ARGV: id, token, keep_count, keep_ms
FINISH = _NOW + _OWNS + """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[4]))
redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -(tonumber(ARGV[3]) + 1))
return 1
"""
# KEYS: owner, active, lease, delayed  ARGV: id, token, delay_ms
RETRY = _NOW + _OWNS + """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
# KEYS: owner, active, lease, wait, wake  ARGV: id, token — a job this process will not finish
# goes back to the front of the line
RELEASE = _WAKE + _OWNS + """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('LREM', KEYS[2], 1, ARGV[1]) > 0 then redis.call('RPUSH', KEYS[4], ARGV[1]) wake(KEYS[5]) end
return 1
"""
# KEYS: delayed, wait, wake, marker → how many due retries were moved to the front of the line,
# or -1 if the marker was gone: Redis lost its data (FLUSHALL, a restart without persistence)
PROMOTE = _NOW + _WAKE + """
if redis.call('SET', KEYS[4], 1, 'NX') then return -1 end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('RPUSH', KEYS[2], id)
end
if #due > 0 then wake(KEYS[3]) end
return #due
"""
# KEYS: active, lease, wait, owner, wake  ARGV: lease_ms → ids taken over. An active id with no
# lease (left by an older version) gets one now, so it too expires if nobody holds it.
REAP = _NOW + _WAKE + """
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  redis.call('ZADD', KEYS[2], 'NX', now + tonumber(ARGV[1]), id)
end
local moved = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  if redis.call('LREM', KEYS[1], 1, id) > 0 then
    redis.call('RPUSH', KEYS[3], id)
    moved[#moved + 1] = id
  end
end
if #moved > 0 then wake(KEYS[5]) end
return moved
"""
# KEYS: every finished record  ARGV: grace_ms
CLEAN = _NOW + """
local cutoff, n = now - tonumber(ARGV[1]), 0
for _, key in ipairs(KEYS) do n = n + redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff) end
return n
"""
# KEYS: wait, active, delayed, then every finished record → their sizes, in that order
STATS = """
local out = {redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2])}
for i = 3, #KEYS do out[#out + 1] = redis.call('ZCARD', KEYS[i]) end
return out
"""
# KEYS: failed, live, wait, attempts, wake
RETRY_FAILED = _WAKE + """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
local n = 0
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[4], id)
  if redis.call('SADD', KEYS[2], id) == 1 then
    redis.call('LPUSH', KEYS[3], id)
    n = n + 1
  end
end
if n > 0 then wake(KEYS[5]) end
return n
"""

PROMOTE_EVERY = 0.2
REAP_EVERY = 1.0
BLOCK = 1.0  # seconds a fetcher blocks for a wake-up before it looks at the line again
SILENT = 2.0  # seconds past BLOCK without an answer after which Redis counts as silent


class Outage:
    """Logs a lost Redis once per outage (not per attempt), paces retries with capped backoff,
    and calls ``on_recovered`` when Redis answers again (work may have been lost meanwhile)."""

    def __init__(self) -> None:
        self.down = False
        self.on_recovered: Callable[[], object] | None = None
        self._waits = self._schedule()

    @staticmethod
    def _schedule() -> Any:
        waits = backoff.expo(base=2, factor=0.1, max_value=2.0)
        next(waits)  # prime the generator
        return waits

    def mark(self, error: Exception) -> None:
        if not self.down:
            self.down = True
            log.warning("redis_unavailable", error=str(error) or type(error).__name__)

    async def failed(self, error: Exception) -> None:
        self.mark(error)
        await asyncio.sleep(next(self._waits) or 0.1)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.info("redis_available")
            self._waits = self._schedule()
            if self.on_recovered is not None:
                self.on_recovered()


class RedisQueue:
    # Read once: the consumer pool is sized and the connections made at start.
    RESTART_KEYS = ("queue.concurrency", "redis.url", "redis.password_file", "redis.prefix")

    def __init__(self, settings: QueueSettings, url: str, prefix: str = "cwall:") -> None:
        self.settings = settings
        p = f"{prefix}q:"
        self.k = {name: p + name for name in ("wait", "active", "lease", "owner", "delayed", "live", "attempts",
                                              "wake", "marker", *FINISHED)}
        self.commands = Coalesced(url)
        # The blocking wait gets a connection of its own, so it never holds up others; its
        # timeout is above the block time, so a Redis that stops answering is noticed.
        self._blocking = Coalesced(url, timeout=BLOCK + SILENT, keepalive=True)
        self._scripts = {name: self.commands.script(src) for name, src in (
            ("enqueue", ENQUEUE), ("take_many", TAKE_MANY), ("finish", FINISH), ("retry", RETRY),
            ("release", RELEASE), ("promote", PROMOTE), ("reap", REAP), ("clean", CLEAN),
            ("retry_failed", RETRY_FAILED), ("stats", STATS))}
        self.nonce = os.urandom(6).hex()  # this process, in owner tokens
        self.outage = Outage()
        self._handler: Handler | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetcher: asyncio.Task[None] | None = None
        self._maintainer: asyncio.Task[None] | None = None
        self._taking = False  # a TAKE is in flight: cancelling the fetcher now could strand its jobs
        self._concurrency = settings.concurrency
        self._stopping = False

    @property
    def on_recovered(self) -> Callable[[], object] | None:
        return self.outage.on_recovered

    @on_recovered.setter
    def on_recovered(self, fn: Callable[[], object] | None) -> None:
        self.outage.on_recovered = fn

    def reconfigure(self, settings: QueueSettings) -> None:
        """A reload: timeouts, retries, backoff and retention apply to the next job."""
        self.settings = settings

    @property
    def lease_ms(self) -> int:
        """An attempt and then give_up may each take job_timeout; past that the consumer is dead."""
        return int((2 * self.settings.job_timeout + 1) * 1000)

    def _keys(self, *names: str) -> list[str]:
        return [self.k[n] for n in names]

    async def enqueue(self, confession_id: int) -> bool:
        try:
            done = await self._script("enqueue", ("live", "wait", "wake", *FINISHED), confession_id)
        except (RedisError, OSError) as e:
            self.outage.mark(e)  # the sweep on recovery queues it
            raise
        return bool(done)

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._stopping = False
        self._fetcher = asyncio.create_task(self._fetch(), name="queue-fetch")
        self._maintainer = asyncio.create_task(self._maintain(), name="queue-maintain")

    async def stop(self, grace: float) -> None:
        """Stop taking jobs at once; give active ones ``grace``; hand the rest back now. The
        fetcher is cancelled only in its blocking wait: a TAKE in flight is let finish, so no
        job is left in active behind a reply nobody reads."""
        self._stopping = True
        # the fetcher waiting for a slot or for work has nothing to lose; in a TAKE it ends by itself
        await tasks.cancel(self._maintainer, None if self._taking else self._fetcher)
        if self._fetcher is not None:
            await asyncio.gather(self._fetcher, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        await tasks.cancel(*self._tasks)
        await self._blocking.aclose(wait=0)
        await self.commands.aclose()

    async def _fetch(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            held = 1
            while not self._slots.locked():  # acquire() does not suspend while a slot is free
                await self._slots.acquire()
                held += 1
            jobs: list[tuple[int, int]] = []
            error: Exception | None = None
            self._taking = not self._stopping
            try:
                if not self._taking:
                    break
                taken = await self._script("take_many", ("wait", "active", "lease", "attempts", "owner"),
                                           held, self.lease_ms, self.nonce)
                jobs = [(int(taken[i]), int(taken[i + 1])) for i in range(0, len(taken), 2)]
            except (RedisError, OSError) as e:
                error = e
            finally:
                self._taking = False
                for _ in range(held - len(jobs)):  # each job keeps its slot until _work ends
                    self._slots.release()
            if error is not None:
                await self.outage.failed(error)
            else:
                self.outage.ok()
            for cid, attempt in jobs:
                task = asyncio.create_task(self._work(cid, attempt))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not jobs and not self.outage.down and not self._stopping:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        """Block until a wake-up token or BLOCK seconds: a lost token costs at most BLOCK."""
        try:
            await self._blocking.call("BLPOP", self.k["wake"], BLOCK)
        except (RedisError, OSError) as e:
            await self.outage.failed(e)

    async def _work(self, cid: int, attempt: int) -> None:
        """Run one job this process holds in active under the token ``nonce:attempt``."""
        assert self._handler is not None
        token = f"{self.nonce}:{attempt}"
        acked = False
        try:
            result = await run_attempt(self._handler, self.settings, str(cid), cid, attempt)
            if result.outcome == "retry":
                held = await self._script("retry", ("owner", "active", "lease", "delayed"), cid, token,
                                          int(result.delay * 1000))
            else:
                held = await self._script("finish", ("owner", "active", "lease", "live", "attempts", result.outcome), cid,
                                          token, self.settings.keep_finished, int(self.settings.keep_finished_seconds * 1000))
            acked = True
            if not held:  # another process took the job over meanwhile: its run counts, not ours
                log.warning("job_lease_lost", job_id=str(cid), confession_id=cid, attempt=attempt)
                metrics.JOBS.labels("lease_lost").inc()
        except (RedisError, OSError) as e:
            # Redis went away mid-job: the lease expires and another consumer (or this one) retries.
            log.warning("job_ack_failed", job_id=str(cid), confession_id=cid, error=str(e))
            acked = True
        finally:
            if not acked:  # cancelled by stop(): hand the job back now rather than at lease expiry
                try:
                    await asyncio.shield(self._script("release", ("owner", "active", "lease", "wait", "wake"), cid, token))
                except Exception:  # noqa: BLE001 - the lease still expires
                    pass
            self._slots.release()

    async def _script(self, name: str, keys: tuple[str, ...], *args: Any) -> Any:
        return await self._scripts[name](self._keys(*keys), list(args))

    async def _maintain(self) -> None:
        ticks = 0
        while not self._stopping:
            try:
                promoted = await self._script("promote", ("delayed", "wait", "wake", "marker"))
                self.outage.ok()
                if promoted == -1 and ticks:
                    # Every job Redis held is gone, with no outage to notice (FLUSHALL), or with one
                    # (restarted empty): SQLite knows which confessions are pending; queue them now.
                    log.warning("redis_data_lost", hint="FLUSHALL or a restart without persistence")
                    if self.outage.on_recovered is not None:
                        self.outage.on_recovered()
                if ticks % int(REAP_EVERY / PROMOTE_EVERY) == 0:
                    for raw in await self._script("reap", ("active", "lease", "wait", "owner", "wake"), self.lease_ms):
                        log.warning("job_stalled", job_id=raw.decode(), confession_id=int(raw))
                        metrics.JOBS.labels("stalled").inc()
            except (RedisError, OSError) as e:
                await self.outage.failed(e)
            ticks += 1
            await asyncio.sleep(PROMOTE_EVERY)

    async def ping(self) -> None:
        await self.commands.call("PING")

    @property
    def consumers(self) -> int:
        """Consumers that can take jobs now: 0 when stopped or while Redis does not answer."""
        running = all(t is not None and not t.done() for t in (self._fetcher, self._maintainer))
        return self._concurrency if running and not self.outage.down else 0

    async def stats(self) -> dict[str, int]:
        sizes = await self._script("stats", ("wait", "active", "delayed", *FINISHED))
        counts = dict(zip(("waiting", "active", "delayed", *FINISHED), sizes))
        return {**counts, "total": sum(counts.values())}

    async def clean(self, grace: float) -> int:
        return int(await self._script("clean", FINISHED, int(grace * 1000)))

    async def retry_failed(self) -> int:
        return int(await self._script("retry_failed", ("failed", "live", "wait", "attempts", "wake")))

