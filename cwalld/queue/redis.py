"""The Redis queue: AI jobs shared by every cwalld process on a Redis server (≥ 6.2).

Why lists and sorted sets rather than a stream: a job here is just a confession id, retried later
with a delay and deduplicated while live. Streams would still need a sorted set for delays and a
set for dedup, and XAUTOCLAIM cannot move a job back to "delayed". So:

    wait     LIST   ids ready to run (LPUSH in, BLMOVE out at the right end)
    active   LIST   ids being run (BLMOVE wait → active: a crash never drops a job in transit)
    lease    ZSET   id → when its consumer is presumed dead (server time, ms)
    delayed  ZSET   id → when its retry is due
    live     SET    ids waiting, active or delayed: one job per confession
    attempts HASH   id → attempts started
    completed, failed  ZSET  id → finished at (bounded by age and count)

Every move between states is one Lua script using the server's clock, so processes on different
machines agree and nothing is half-moved. Each process runs one fetcher, taking jobs only for its
free ``concurrency`` slots: while jobs wait, one script moves as many as there are free slots to
active with their leases (one round trip, not two a job); on an empty line it blocks in BLMOVE
on a connection of its own. And one
maintenance loop that promotes due retries every 0.2 s (so they fire on an idle queue) and takes
over jobs whose lease expired (``stalled``). A job is acknowledged only after ``run_attempt``
returned, i.e. after its effect is committed to SQLite; the handler is idempotent, so a job that
runs twice after a takeover changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import backoff
import structlog
from redis.exceptions import RedisError

from cwalld import metrics
from cwalld.config import Queue as QueueSettings
from cwalld.queue import Handler, run_attempt
from cwalld.redis_client import Coalesced, connect

log = structlog.get_logger("cwalld.queue")

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

ENQUEUE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""
# KEYS: lease, attempts  ARGV: id, lease_ms → attempt number (for an id BLMOVE brought)
TAKE = _NOW + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
"""
# KEYS: wait, active, lease, attempts  ARGV: n, lease_ms → {id, attempt, id, attempt, …}, up to n
TAKE_MANY = _NOW + """
local out = {}
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HINCRBY', KEYS[4], id, 1)
end
return out
"""
# KEYS: active, lease, live, attempts, finished  ARGV: id, keep_count, keep_ms
FINISH = _NOW + """
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[2]) + 1))
"""
# KEYS: active, lease, delayed  ARGV: id, delay_ms
RETRY = _NOW + """
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
"""
# KEYS: active, lease, wait  ARGV: id — a job this process will not finish goes back to the line
RELEASE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then redis.call('RPUSH', KEYS[3], ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
"""
# KEYS: delayed, wait → how many due retries were moved to the front of the line
PROMOTE = _NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('RPUSH', KEYS[2], id)
end
return #due
"""
# KEYS: active, lease, wait  ARGV: lease_ms → ids taken over. An active id with no lease (its
# consumer died between BLMOVE and TAKE) gets one now, so it too expires if nobody renews it.
REAP = _NOW + """
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  redis.call('ZADD', KEYS[2], 'NX', now + tonumber(ARGV[1]), id)
end
local moved = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  if redis.call('LREM', KEYS[1], 1, id) > 0 then
    redis.call('RPUSH', KEYS[3], id)
    moved[#moved + 1] = id
  end
end
return moved
"""
# KEYS: completed, failed  ARGV: grace_ms
CLEAN = _NOW + """
local cutoff = now - tonumber(ARGV[1])
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff) + redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
"""
# KEYS: failed, live, wait, attempts
RETRY_FAILED = """
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
return n
"""

PROMOTE_EVERY = 0.2
REAP_EVERY = 1.0


class Outage:
    """Logs a lost Redis once per outage (not per attempt) and paces retries with capped backoff."""

    def __init__(self) -> None:
        self.down = False
        self._waits = backoff.expo(base=2, factor=0.1, max_value=5.0)
        next(self._waits)  # prime the generator

    async def failed(self, error: Exception) -> None:
        if not self.down:
            self.down = True
            log.warning("redis_unavailable", error=str(error))
        await asyncio.sleep(next(self._waits) or 0.1)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.info("redis_available")
            self._waits = backoff.expo(base=2, factor=0.1, max_value=5.0)
            next(self._waits)


class RedisQueue:
    def __init__(self, settings: QueueSettings, url: str, prefix: str = "cwall:") -> None:
        self.settings = settings
        p = f"{prefix}q:"
        self.k = {name: p + name for name in
                  ("wait", "active", "lease", "delayed", "live", "attempts", "completed", "failed")}
        self.r = connect(url)
        self.commands = Coalesced(self.r)
        # BLMOVE blocks its connection: it gets a client of its own, so it never starves others.
        self._blocking = connect(url, socket_timeout=None)
        self._scripts = {name: self.commands.script(src) for name, src in (
            ("enqueue", ENQUEUE), ("take", TAKE), ("take_many", TAKE_MANY), ("finish", FINISH), ("retry", RETRY), ("release", RELEASE),
            ("promote", PROMOTE), ("reap", REAP), ("clean", CLEAN), ("retry_failed", RETRY_FAILED))}
        # An attempt and then give_up may each take job_timeout; past that the consumer is dead.
        self.lease_ms = int((2 * settings.job_timeout + 1) * 1000)
        self.keep_ms = int(settings.keep_finished_seconds * 1000)
        self.outage = Outage()
        self._handler: Handler | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    def _keys(self, *names: str) -> list[str]:
        return [self.k[n] for n in names]

    async def enqueue(self, confession_id: int) -> bool:
        done = await self._scripts["enqueue"](self._keys("live", "wait", "completed", "failed"), [confession_id])
        return bool(done)

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._stopping = False
        self._loops = [asyncio.create_task(self._fetch(), name="queue-fetch"),
                       asyncio.create_task(self._maintain(), name="queue-maintain")]

    async def stop(self, grace: float) -> None:
        self._stopping = True
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._blocking.aclose()
        await self.commands.aclose()

    async def _fetch(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            held = 1
            while not self._slots.locked():  # acquire() does not suspend while a slot is free
                await self._slots.acquire()
                held += 1
            jobs: list[tuple[int, int]] = []
            try:
                taken = await self._script("take_many", ("wait", "active", "lease", "attempts"), held, self.lease_ms)
                jobs = [(int(taken[i]), int(taken[i + 1])) for i in range(0, len(taken), 2)]
                if not jobs:  # an empty line: wait for the next job without polling
                    raw = await self._blocking.blmove(self.k["wait"], self.k["active"], 1, "RIGHT", "LEFT")
                    jobs = [(int(raw), 0)] if raw is not None else []
                self.outage.ok()
            except (RedisError, OSError) as e:
                await self.outage.failed(e)
            finally:
                for _ in range(held - len(jobs)):  # each job keeps its slot until _work ends
                    self._slots.release()
            for cid, attempt in jobs:
                task = asyncio.create_task(self._work(cid, attempt))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _work(self, cid: int, attempt: int) -> None:
        """Run one job held in active; ``attempt`` 0 means BLMOVE brought it without a lease yet."""
        assert self._handler is not None
        finished = False
        try:
            if not attempt:
                attempt = await self._script("take", ("lease", "attempts"), cid, self.lease_ms)
            result = await run_attempt(self._handler, self.settings, str(cid), cid, attempt)
            if result.outcome == "retry":
                await self._script("retry", ("active", "lease", "delayed"), cid, int(result.delay * 1000))
            else:
                state = "failed" if result.outcome == "failed" else "completed"
                await self._script("finish", ("active", "lease", "live", "attempts", state), cid,
                                   self.settings.keep_finished, self.keep_ms)
            finished = True
        except (RedisError, OSError) as e:
            # Redis went away mid-job: the lease expires and another consumer (or this one) retries.
            log.warning("job_ack_failed", job_id=str(cid), confession_id=cid, error=str(e))
            finished = True
        finally:
            if not finished:  # cancelled by stop(): hand the job back now rather than at lease expiry
                try:
                    await asyncio.shield(self._script("release", ("active", "lease", "wait"), cid))
                except Exception:  # noqa: BLE001 - the lease still expires
                    pass
            self._slots.release()

    async def _script(self, name: str, keys: tuple[str, ...], *args: Any) -> Any:
        return await self._scripts[name](self._keys(*keys), list(args))

    async def _maintain(self) -> None:
        ticks = 0
        while not self._stopping:
            try:
                await self._script("promote", ("delayed", "wait"))
                if ticks % int(REAP_EVERY / PROMOTE_EVERY) == 0:
                    for raw in await self._script("reap", ("active", "lease", "wait"), self.lease_ms):
                        log.warning("job_stalled", job_id=raw.decode(), confession_id=int(raw))
                        metrics.JOBS.labels("stalled").inc()
                self.outage.ok()
            except (RedisError, OSError) as e:
                await self.outage.failed(e)
            ticks += 1
            await asyncio.sleep(PROMOTE_EVERY)

    async def ping(self) -> None:
        await self.r.ping()

    @property
    def consumers(self) -> int:
        running = bool(self._loops) and not any(t.done() for t in self._loops)
        return self.settings.concurrency if running else 0

    async def stats(self) -> dict[str, int]:
        async with self.r.pipeline(transaction=True) as p:
            p.llen(self.k["wait"]).llen(self.k["active"]).zcard(self.k["completed"])
            p.zcard(self.k["failed"]).zcard(self.k["delayed"])
            waiting, active, completed, failed, delayed = await p.execute()
        counts = {"waiting": waiting, "active": active, "completed": completed, "failed": failed, "delayed": delayed}
        return {**counts, "total": sum(counts.values())}

    async def clean(self, grace: float) -> int:
        return int(await self._script("clean", ("completed", "failed"), int(grace * 1000)))

    async def retry_failed(self) -> int:
        return int(await self._script("retry_failed", ("failed", "live", "wait", "attempts")))

