"""The job-queue contract. Every backend runs these same assertions (see the ``queue`` fixture)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from cwalld.config import Queue as QueueSettings
from cwalld.queue import Done, JobQueue
from cwalld.queue.local import LocalQueue
from cwalld.queue.redis import RedisQueue

SETTINGS = QueueSettings(concurrency=3, job_timeout=1.0, retries=2, backoff=[0.1, 0.2], shutdown_grace=1.0)
BACKENDS = ["local", "redis"]


class Recorder:
    """A handler that fails the first ``fail[cid]`` attempts of a job and records every call."""

    def __init__(self) -> None:
        self.fail: dict[int, int] = defaultdict(int)
        self.sleep: dict[int, float] = defaultdict(float)
        self.runs: Counter[int] = Counter()
        self.times: dict[int, list[float]] = defaultdict(list)
        self.gave_up: list[int] = []
        self.give_up_fails = False
        self.done: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.active = self.most_active = 0
        self.ends: dict[int, Done] = {}  # how a job's run ends when it does not fail (else completed)
        self.give_up_ends: Done = "fallback"

    async def run(self, cid: int) -> Done:
        self.runs[cid] += 1
        self.times[cid].append(time.monotonic())
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.sleep[cid]:
                await asyncio.sleep(self.sleep[cid])
        finally:
            self.active -= 1
        if self.runs[cid] <= self.fail[cid]:
            raise RuntimeError(f"scripted failure {self.runs[cid]}")
        self.done[cid].set()
        return self.ends.get(cid, "completed")

    async def give_up(self, cid: int) -> Done:
        if self.give_up_fails:
            raise RuntimeError("give_up failed too")
        self.gave_up.append(cid)
        self.done[cid].set()
        return self.give_up_ends


@pytest.fixture(params=BACKENDS)
async def queue(request: Any, redis_prefix: str) -> Any:
    """Makes queues of one backend; a Redis one gets the session's server and its own key prefix."""
    queues: list[JobQueue] = []

    async def make(settings: QueueSettings = SETTINGS) -> JobQueue:
        if request.param == "local":
            q: JobQueue = LocalQueue(settings)
        else:
            q = RedisQueue(settings, request.getfixturevalue("redis_server").url, redis_prefix)
        queues.append(q)
        return q

    yield make
    for q in queues:
        await q.stop(0)


async def settled(q: JobQueue, **expect: int) -> dict[str, int]:
    """Wait until stats show ``expect`` (jobs finish asynchronously)."""
    stats: dict[str, int] = {}
    for _ in range(200):
        stats = await q.stats()
        if all(stats[k] == v for k, v in expect.items()):
            return stats
        await asyncio.sleep(0.02)
    raise AssertionError(f"stats {stats} never reached {expect}")


async def test_jobs_run_once_and_count_as_completed(queue: Any) -> None:
    q, h = await queue(), Recorder()
    await q.start(h)
    for cid in range(1, 11):
        assert await q.enqueue(cid) is True
    stats = await settled(q, completed=10)
    assert stats == {"waiting": 0, "active": 0, "delayed": 0, "completed": 10, "fallback": 0, "held": 0, "failed": 0,
                     "total": 10}
    assert set(h.runs.values()) == {1}


async def test_one_job_per_confession_while_waiting_delayed_or_active(queue: Any) -> None:
    q, h = await queue(), Recorder()
    assert await q.enqueue(7) is True
    assert await q.enqueue(7) is False  # waiting
    assert (await q.stats())["waiting"] == 1
    h.fail[7], h.sleep[7] = 1, 0.2
    await q.start(h)
    await settled(q, active=1)
    assert await q.enqueue(7) is False  # active
    await settled(q, delayed=1)
    assert await q.enqueue(7) is False  # delayed
    await asyncio.wait_for(h.done[7].wait(), 3)
    await settled(q, completed=1, total=1)
    assert h.runs[7] == 2
    assert await q.enqueue(7) is True  # finished: a new job may be queued


async def test_retries_wait_for_the_backoff(queue: Any) -> None:
    q, h = await queue(), Recorder()
    h.fail[1] = 2
    await q.start(h)
    await q.enqueue(1)
    await asyncio.wait_for(h.done[1].wait(), 3)
    t = h.times[1]
    assert len(t) == 3 and t[1] - t[0] >= 0.1 and t[2] - t[1] >= 0.2
    assert t[1] - t[0] < 0.1 + 0.5  # a delayed retry fires on time, on an otherwise idle queue
    assert h.gave_up == []


async def test_give_up_after_the_last_retry(queue: Any) -> None:
    q, h = await queue(), Recorder()
    h.fail[1] = 99
    await q.start(h)
    await q.enqueue(1)
    await asyncio.wait_for(h.done[1].wait(), 3)
    assert h.runs[1] == 3 and h.gave_up == [1]  # 1 attempt + retries=2
    await settled(q, fallback=1, completed=0, failed=0)


async def test_each_way_a_job_ends_is_counted_apart(queue: Any) -> None:
    q, h = await queue(), Recorder()
    h.ends = {2: "fallback", 3: "held"}
    h.fail[4] = 99
    h.give_up_ends = "held"
    await q.start(h)
    for cid in (1, 2, 3, 4):
        await q.enqueue(cid)
    await settled(q, completed=1, fallback=1, held=2, failed=0, total=4)
    h.ends[3] = "completed"
    assert await q.enqueue(3)  # a held confession is tried again: its record moves
    await settled(q, completed=2, fallback=1, held=1, total=4)
    assert await q.clean(0) == 4


async def test_failed_jobs_are_counted_cleaned_and_retried(queue: Any) -> None:
    q, h = await queue(), Recorder()
    h.fail[1] = h.fail[2] = 99
    h.give_up_fails = True
    await q.start(h)
    await q.enqueue(1)
    await q.enqueue(2)
    await q.enqueue(3)
    await settled(q, failed=2, completed=1)
    h.give_up_fails = False
    h.fail[1] = h.fail[2] = 0
    assert await q.retry_failed() == 2
    await settled(q, failed=0, completed=3)
    assert await q.clean(3600) == 0  # nothing finished that long ago
    assert await q.clean(0) == 3
    assert (await q.stats())["total"] == 0


async def test_a_job_is_bounded_by_job_timeout(queue: Any) -> None:
    q, h = await queue(QueueSettings(concurrency=1, job_timeout=0.1, retries=0, backoff=[0.1])), Recorder()
    h.sleep[1] = 5
    await q.start(h)
    await q.enqueue(1)
    await asyncio.wait_for(h.done[1].wait(), 2)
    assert h.gave_up == [1]


async def test_concurrency_runs_jobs_in_parallel(queue: Any) -> None:
    q, h = await queue(), Recorder()
    for cid in (1, 2, 3):
        h.sleep[cid] = 0.3
    await q.start(h)
    for cid in (1, 2, 3, 4):
        await q.enqueue(cid)
    await settled(q, completed=4)
    assert h.most_active == 3  # concurrency=3: three at once, never a fourth


async def test_stop_lets_active_jobs_finish(queue: Any) -> None:
    q, h = await queue(), Recorder()
    h.sleep[1] = 0.3
    await q.start(h)
    await q.enqueue(1)
    await settled(q, active=1)
    await q.stop(grace=2.0)
    assert h.done[1].is_set()
