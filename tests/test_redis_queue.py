"""The Redis queue beyond the shared contract: restarts, takeovers, outages, several processes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import redis.asyncio as aioredis
import structlog

from cwalld.config import Queue as QueueSettings
from cwalld.http.keys import WALL
from cwalld.queue.redis import RedisQueue
from tests.conftest import Api, RedisServer, test_config
from tests.test_queue_contract import Recorder, settled

FAST = QueueSettings(concurrency=3, job_timeout=0.5, retries=2, backoff=[1.0], shutdown_grace=1.0)


async def test_delayed_retry_fires_on_time_after_every_consumer_restarted(redis_server: Any, redis_prefix: str) -> None:
    first, h = RedisQueue(FAST, redis_server.url, redis_prefix), Recorder()
    h.fail[1] = 1
    await first.start(h)
    await first.enqueue(1)
    await settled(first, delayed=1)
    failed_at = h.times[1][0]
    await first.stop(0)  # every consumer gone; nothing else will ever arrive on this queue

    second = RedisQueue(FAST, redis_server.url, redis_prefix)
    await second.start(h)
    try:
        await asyncio.wait_for(h.done[1].wait(), 5)
        late = h.times[1][1] - (failed_at + 1.0)
        print(f"retry due after 1.0 s ran {late * 1000:+.0f} ms from due")
        assert -0.05 <= late <= 0.5
        await settled(second, completed=1, delayed=0, total=1)
    finally:
        await second.stop(0)


async def test_a_job_left_active_by_a_dead_consumer_is_taken_over(redis_server: Any, redis_prefix: str) -> None:
    q, h = RedisQueue(FAST, redis_server.url, redis_prefix), Recorder()
    r = aioredis.from_url(redis_server.url)
    # a consumer that died right after taking the job: it sits in `active` and nobody runs it
    await q.enqueue(5)
    assert await r.blmove(q.k["wait"], q.k["active"], 1, "RIGHT", "LEFT") == b"5"
    assert await q.enqueue(5) is False  # still live: no second job
    with structlog.testing.capture_logs() as logs:
        await q.start(h)
        await asyncio.wait_for(h.done[5].wait(), 2 * q.lease_ms / 1000 + 3)
        await settled(q, completed=1, active=0, total=1)
    await q.stop(0)
    await r.aclose()
    assert h.runs[5] == 1
    assert [e["confession_id"] for e in logs if e["event"] == "job_stalled"] == [5]


async def test_two_processes_share_one_queue_and_run_each_job_once(redis_server: Any, redis_prefix: str) -> None:
    h = Recorder()
    a, b = RedisQueue(FAST, redis_server.url, redis_prefix), RedisQueue(FAST, redis_server.url, redis_prefix)
    for cid in range(1, 61):
        h.sleep[cid] = 0.01
        assert await (a if cid % 2 else b).enqueue(cid) is True
    assert await b.enqueue(1) is False and await a.enqueue(2) is False  # one job per confession, across processes
    await a.start(h)
    await b.start(h)
    await settled(a, completed=60, total=60)
    assert set(h.runs) == set(range(1, 61)) and set(h.runs.values()) == {1}
    await a.stop(0)
    await b.stop(0)


async def test_finished_records_are_bounded(redis_server: Any, redis_prefix: str) -> None:
    settings = QueueSettings(concurrency=2, job_timeout=1.0, retries=0, backoff=[0.1], keep_finished=5)
    q, h = RedisQueue(settings, redis_server.url, redis_prefix), Recorder()
    await q.start(h)
    for cid in range(12):
        await q.enqueue(cid)
    await settled(q, waiting=0, active=0)
    await asyncio.sleep(0.1)
    assert await q.stats() == {"waiting": 0, "active": 0, "delayed": 0, "completed": 5, "fallback": 0, "held": 0,
                               "failed": 0, "total": 5}
    await q.stop(0)


async def test_stop_hands_unfinished_jobs_back(redis_server: Any, redis_prefix: str) -> None:
    q, h = RedisQueue(FAST, redis_server.url, redis_prefix), Recorder()
    h.sleep[9] = 30
    await q.start(h)
    await q.enqueue(9)
    await settled(q, active=1)
    await q.stop(grace=0.1)  # the job outlives the grace
    q2 = RedisQueue(FAST, redis_server.url, redis_prefix)
    assert (await q2.stats())["waiting"] == 1  # back in line at once, not after the lease
    await q2.commands.aclose()
    await q2._blocking.aclose()


async def test_password_and_db_index(tmp_path: Any) -> None:
    server = RedisServer(tmp_path, "--requirepass", "s3cret")
    server.start()
    try:
        q = RedisQueue(FAST, f"redis://:s3cret@127.0.0.1:{server.port}/3", "pw:")
        assert await q.enqueue(1) is True
        assert server.cli("-a", "s3cret", "--no-auth-warning", "-n", "3", "LLEN", "pw:q:wait") == "1"
        assert server.cli("-a", "s3cret", "--no-auth-warning", "-n", "0", "DBSIZE") == "0"
        await q.commands.aclose()
        await q._blocking.aclose()
    finally:
        server.stop()


async def test_an_outage_is_logged_once_and_the_queue_recovers(own_redis: Any, redis_prefix: str) -> None:
    q, h = RedisQueue(FAST, own_redis.url, redis_prefix), Recorder()
    with structlog.testing.capture_logs() as logs:
        await q.start(h)
        own_redis.stop()
        await asyncio.sleep(2.5)
        own_redis.start()
        deadline = time.monotonic() + 10
        while q.outage.down:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await q.enqueue(3)
        await asyncio.wait_for(h.done[3].wait(), 5)
    await q.stop(0)
    events = [e["event"] for e in logs if e["event"].startswith("redis_")]
    # the restarted Redis is empty: that is said too (and its pending work queued again)
    assert events in (["redis_unavailable", "redis_available"], ["redis_unavailable", "redis_available", "redis_data_lost"])


# --- the daemon on Redis (in-process) ---


async def test_flushall_in_the_middle_of_200_confessions_loses_none(
        tmp_path: Any, fake_ai: Any, make_client: Any, own_redis: Any) -> None:
    cfg = test_config(tmp_path, fake_ai.url, redis={"url": own_redis.url},
                      queue={"sweep_grace": 0.5}, scheduler={"recovery": "* * * * * *"}, limits={"daily_confessions": 1000})
    api = Api(await make_client(cfg))
    fake_ai.latency = 0.05  # slower than posting: a backlog builds up in Redis
    token = await api.register()
    for i in range(200):
        r = await api.post(token, content=f"Toplu itiraf numarası {i}, kimseye söylemedim.")
        assert r.status == 202
        if i == 100:
            lost = await api.c.app[WALL].queue.stats()
            own_redis.cli("FLUSHALL")
    assert lost["waiting"] >= 10  # the flush really threw queued jobs away
    deadline = time.monotonic() + 30
    while True:
        stats = await (await api.c.get("/api/v1/stats")).json()
        if stats["confessions"]["published"] == 200:
            break
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.2)
    print(f"queue at FLUSHALL: {lost}; after: {stats['confessions']}")
    assert stats["confessions"]["pending"] == 0


async def test_redis_down_post_still_202_and_the_sweep_publishes_later(
        tmp_path: Any, fake_ai: Any, make_client: Any, own_redis: Any) -> None:
    cfg = test_config(tmp_path, fake_ai.url, redis={"url": own_redis.url},
                      queue={"sweep_grace": 0.2}, scheduler={"recovery": "* * * * * *"})
    api = Api(await make_client(cfg))
    token = await api.register()
    own_redis.stop()
    started = time.monotonic()
    r = await api.post(token)
    assert r.status == 202 and time.monotonic() - started < 2.5
    cid = (await r.json())["confession"]["id"]
    await asyncio.sleep(0.5)
    assert (await api.confession(cid, token))["status"] == "pending"
    own_redis.start()
    c = await api.wait_status(cid, token, timeout=15)
    assert c["ai_fallback"] is False


async def test_tls_rediss_url(tmp_path: Any) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem"), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server = RedisServer(tmp_path)
    tls_port = server.port
    server.port = 0  # plain TCP off: only TLS is served
    server.args = ("--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "c.pem"),
                   "--tls-key-file", str(tmp_path / "k.pem"), "--tls-ca-cert-file", str(tmp_path / "c.pem"),
                   "--tls-auth-clients", "no")
    server.start(probe_port=tls_port)
    try:
        q, h = RedisQueue(FAST, f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={tmp_path / 'c.pem'}", "tls:"), Recorder()
        await q.start(h)
        assert await q.enqueue(1) is True
        await asyncio.wait_for(h.done[1].wait(), 5)
        await q.stop(0)
    finally:
        server.stop()


async def test_a_burst_of_enqueues_at_once_all_succeed(redis_server: Any, redis_prefix: str) -> None:
    q = RedisQueue(FAST, redis_server.url, redis_prefix)
    try:
        # a viral minute's POSTs, all in one loop iteration (redis-py's pool once raised "Too many
        # connections" here; now they share one connection and one write)
        results = await asyncio.gather(*(q.enqueue(i) for i in range(1, 301)), return_exceptions=True)
        assert [r for r in results if r is not True] == []
        assert (await q.stats())["waiting"] == 300
    finally:
        await q.stop(0)
