"""The queue when things break: a silent Redis, a run that lost its lease, a stop mid-fetch,
a reload, an outage that ends (issue 10, defects 1, 2, 8, 9, 13)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import redis.asyncio as aioredis
import structlog

from cwalld.config import Queue as QueueSettings
from cwalld.queue import Done
from cwalld.queue.local import LocalQueue
from cwalld.queue.redis import RedisQueue
from tests.proxy import SilentProxy
from tests.test_queue_contract import Recorder, settled

FAST = QueueSettings(concurrency=3, job_timeout=0.5, retries=2, backoff=[1.0], shutdown_grace=1.0)


async def _until(check: Any, timeout: float, what: str) -> float:
    """Seconds until ``check()`` is true (awaited if it returns a coroutine)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        ok = check()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


async def test_a_silent_redis_is_noticed_and_consumers_resume(redis_server: Any, redis_prefix: str) -> None:
    """Defect 1: a Redis that stops answering without FIN/RST (crash, failover, partition) left
    the blocking fetch hanging forever; consumers never took a job again."""
    proxy = SilentProxy(redis_server.port)
    await proxy.start()
    q, h = RedisQueue(FAST, proxy.url, redis_prefix), Recorder()
    direct = RedisQueue(FAST, redis_server.url, redis_prefix)  # another process, on a healthy path
    await q.start(h)
    try:
        await q.enqueue(1)
        await asyncio.wait_for(h.done[1].wait(), 5)
        await asyncio.sleep(0.3)  # the fetcher now waits for work, blocked on Redis
        proxy.silence()
        noticed = await _until(lambda: q.consumers == 0, 10, "consumers reported while Redis is silent")
        print(f"silent Redis noticed after {noticed:.1f} s")
        proxy.heal()
        back = await _until(lambda: q.consumers > 0, 10, "consumers back after Redis answers again")
        await direct.enqueue(2)
        took = await _until(lambda: h.done[2].is_set(), 10, "a job queued after Redis answers again")
        print(f"consumers back {back:.1f} s after Redis answered; next job ran {took:.1f} s later")
    finally:
        await q.stop(0)
        await direct.stop(0)
        await proxy.stop()


class Gated(Recorder):
    """Each run of a job waits for its own gate: the test decides when it ends."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []
        self.started = asyncio.Event()

    async def run(self, cid: int) -> Done:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.started.set()
        await gate.wait()
        return await super().run(cid)


async def test_a_run_that_lost_its_lease_changes_nothing(redis_server: Any, redis_prefix: str) -> None:
    """Defect 2: a late FINISH from a run whose lease expired (a stalled process) deleted the new
    run's active entry and lease: stats said active 0 mid-run and the job could be queued twice."""
    slow = dataclasses.replace(FAST, job_timeout=30.0, concurrency=1)  # A has no slot to take it back
    a, b = RedisQueue(slow, redis_server.url, redis_prefix), RedisQueue(slow, redis_server.url, redis_prefix)
    ha, hb = Gated(), Gated()
    r = aioredis.from_url(redis_server.url)
    await a.start(ha)
    try:
        await a.enqueue(7)
        await asyncio.wait_for(ha.started.wait(), 5)
        await r.zadd(a.k["lease"], {"7": 0})  # A stalls past its lease (SIGSTOP, GC pause, blocked loop)
        await b.start(hb)
        await asyncio.wait_for(hb.started.wait(), 5)  # B took the job over
        with structlog.testing.capture_logs() as logs:
            ha.gates[0].set()  # A wakes up and acknowledges its stale run
            await _until(lambda: any(e["event"] == "job_lease_lost" for e in logs), 5, "job_lease_lost logged")
        stats = await b.stats()
        assert stats["active"] == 1, stats  # B's run is still active
        assert await b.enqueue(7) is False  # and still the one live job of confession 7
        hb.gates[0].set()
        await settled(b, completed=1, active=0, waiting=0, delayed=0, total=1)
    finally:
        await a.stop(0)
        await b.stop(0)
        await r.aclose()


async def test_the_lease_follows_a_reloaded_job_timeout(redis_server: Any, redis_prefix: str) -> None:
    """Defect 2: the lease was computed once at construction; a reload raising job_timeout let
    another process take over jobs that were still running within their new time."""
    q, h = RedisQueue(FAST, redis_server.url, redis_prefix), Gated()
    r = aioredis.from_url(redis_server.url)
    q.reconfigure(dataclasses.replace(FAST, job_timeout=20.0))
    await q.start(h)
    try:
        await q.enqueue(3)
        await asyncio.wait_for(h.started.wait(), 5)
        (now_s, now_us) = await r.time()
        lease_s = (await r.zscore(q.k["lease"], "3")) / 1000 - (now_s + now_us / 1e6)
        assert 39 < lease_s <= 41.5, lease_s  # 2 × 20 s + 1
        h.gates[0].set()
    finally:
        await q.stop(0)
        await r.aclose()


async def test_a_stop_leaves_no_job_active(redis_server: Any, redis_prefix: str) -> None:
    """Defect 8: a stop that cancelled the fetcher while its TAKE was in flight left the job in
    active until its lease ran out (~21 s). Stop at many moments; nothing may stay active."""
    settings = dataclasses.replace(FAST, concurrency=4, shutdown_grace=0.0)
    checker = RedisQueue(settings, redis_server.url, redis_prefix)
    for round_ in range(15):
        q, h = RedisQueue(settings, redis_server.url, redis_prefix), Recorder()
        for cid in range(round_ * 100, round_ * 100 + 40):
            h.sleep[cid] = 0.02
            await checker.enqueue(cid)
        await q.start(h)
        await asyncio.sleep(0.005 * round_)
        await q.stop(0)
        stats = await checker.stats()
        assert stats["active"] == 0, (round_, stats)
    await checker.stop(0)


async def test_local_queue_stops_taking_jobs_at_once() -> None:
    """Defect 9: with a backlog, the embedded queue kept starting new jobs after a stop began
    and exited only when shutdown_grace ran out."""
    q, h = LocalQueue(dataclasses.replace(FAST, concurrency=2, job_timeout=5.0)), Recorder()
    for cid in range(200):
        h.sleep[cid] = 0.05
        await q.enqueue(cid)
    await q.start(h)
    await asyncio.sleep(0.12)
    started = time.monotonic()
    ran_before = sum(h.runs.values())
    await q.stop(20.0)
    took = time.monotonic() - started
    assert took < 0.5, took  # the active jobs end within 0.05 s; nothing else is waited for
    assert sum(h.runs.values()) <= ran_before  # no job started after the stop began


async def test_jobs_lost_during_an_outage_are_queued_when_redis_returns(own_redis: Any, redis_prefix: str) -> None:
    """Defect 13: after a Redis outage, confessions whose enqueue failed waited for the minute
    sweep (~80 s). The queue tells its owner when Redis is back, at once."""
    q, h = RedisQueue(FAST, own_redis.url, redis_prefix), Recorder()
    recovered = asyncio.Event()
    q.on_recovered = recovered.set  # type: ignore[assignment]
    await q.start(h)
    try:
        own_redis.stop()
        try:
            await q.enqueue(9)
        except Exception:  # noqa: BLE001 - the enqueue of a POST during the outage fails
            pass
        await asyncio.sleep(0.5)
        own_redis.start()
        took = await _until(recovered.is_set, 5, "on_recovered called after Redis returned")
        print(f"on_recovered {took:.1f} s after Redis returned")
    finally:
        await q.stop(0)


async def test_a_flushed_redis_is_noticed_at_once(redis_server: Any, redis_prefix: str) -> None:
    """FLUSHALL (or a Redis restarted empty between two pings) drops every job with no outage to
    notice; the pending confessions then waited for the recovery sweep (~80 s in the chaos run).
    The queue keeps a marker key and tells its owner as soon as it is gone."""
    q, h = RedisQueue(FAST, redis_server.url, redis_prefix), Recorder()
    recovered = asyncio.Event()
    q.on_recovered = recovered.set  # type: ignore[assignment]
    await q.start(h)
    try:
        await asyncio.sleep(0.5)
        assert not recovered.is_set()  # a fresh start is not a loss
        r = aioredis.from_url(redis_server.url)
        for key in await r.keys(redis_prefix + "*"):  # FLUSHALL, for this test's keys only
            await r.delete(key)
        await r.aclose()
        took = await _until(recovered.is_set, 2, "on_recovered called after the queue's keys vanished")
        print(f"flush noticed after {took:.2f} s")
    finally:
        await q.stop(0)
