"""Jobs/s through the Redis queue vs a bare redis-py loop doing the same round trips.

Both push N jobs one call at a time and drain them with 5 consumers, each on a private
redis-server started for the run. The bare loop is LPUSH + BLMOVE + LREM per job — the least a
reliable list queue can do; the ratio says what our leases, dedup, stats and retries cost.

    .venv/bin/python -m bench.queue [--jobs 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis
import structlog

from bench.redis_server import private_redis
from cwalld.config import Queue as QueueSettings
from cwalld.queue import Done
from cwalld.queue.redis import RedisQueue

CONSUMERS = 5


async def bare(url: str, n: int) -> float:
    r = aioredis.Redis.from_url(url)
    done = asyncio.Event()
    left = n

    async def consume() -> None:
        nonlocal left
        conn = aioredis.Redis.from_url(url)
        while left > 0:
            job = await conn.blmove("bare:wait", "bare:active", 1, "RIGHT", "LEFT")
            if job is None:
                continue
            await conn.lrem("bare:active", 1, job)
            left -= 1
            if left == 0:
                done.set()
        await conn.aclose()

    started = time.perf_counter()
    consumers = [asyncio.create_task(consume()) for _ in range(CONSUMERS)]
    for i in range(n):
        await r.lpush("bare:wait", i)
    await done.wait()
    elapsed = time.perf_counter() - started
    await asyncio.gather(*consumers)
    await r.aclose()
    return n / elapsed


class Instant:
    def __init__(self, n: int) -> None:
        self.left, self.done = n, asyncio.Event()

    async def run(self, cid: int) -> Done:
        self.left -= 1
        if self.left == 0:
            self.done.set()
        return "completed"

    async def give_up(self, cid: int) -> Done:  # pragma: no cover - never fails
        return "completed"


async def ours(url: str, n: int) -> float:
    settings = QueueSettings(concurrency=CONSUMERS, job_timeout=10.0, retries=0, backoff=[1.0])
    q, handler = RedisQueue(settings, url, "bench:"), Instant(n)
    started = time.perf_counter()
    await q.start(handler)
    for i in range(n):
        await q.enqueue(i)
    await handler.done.wait()
    elapsed = time.perf_counter() - started
    await q.stop(1.0)
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20000)
    n = p.parse_args().jobs
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # job lines would swamp it
    with private_redis() as url:
        bare_rate = asyncio.run(bare(url, n))
        our_rate = asyncio.run(ours(url, n))
    print(f"redis queue: {our_rate:,.0f} jobs/s   bare redis-py loop: {bare_rate:,.0f} jobs/s   "
          f"ratio {our_rate / bare_rate:.2f} (target >= 0.5; {n} jobs, {CONSUMERS} consumers)")


if __name__ == "__main__":
    main()
