"""Several real daemons on one Redis: kill -9 mid-job, SIGTERM with active jobs."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.test_daemon import call


def redis_env(redis_server: Any, prefix: str, fake_ai: Any) -> dict[str, str]:
    return {"CWALLD_REDIS_URL": redis_server.url, "CWALLD_REDIS_PREFIX": prefix, "OPENAI_API_KEY": "k",
            "CWALLD_AI_BASE_URL": fake_ai.url, "CWALLD_AI_REQUEST_TIMEOUT": "5", "CWALLD_QUEUE_JOB_TIMEOUT": "3",
            "CWALLD_LIMITS_DAILY_CONFESSIONS": "100", "CWALLD_QUEUE_SHUTDOWN_GRACE": "10"}


async def post_many(url: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", url + "/api/v1/auth/register", json={"username": "ece", "password": "password123"})
        ids = []
        for i in range(n):
            status, c = await call(s, "POST", url + "/api/v1/confessions", body["token"],
                                   json={"content": f"Paylaşılan kuyrukta itiraf {i}", "category": "work"})
            assert status == 202
            ids.append(c["confession"]["id"])
        return ids


def statuses(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, status FROM confessions"))


async def test_kill_9_one_of_two_daemons_mid_job_the_other_finishes(
        tmp_path: Path, daemons: Any, fake_ai: Any, redis_server: Any, redis_prefix: str) -> None:
    env = redis_env(redis_server, redis_prefix, fake_ai)
    fake_ai.latency = 1.0  # moderation + reply: 2 s a job
    a, b = daemons(tmp_path, **env), daemons(tmp_path, **env)
    await a.start()
    await b.start()
    ids = await post_many(a.url, 10)
    while fake_ai.calls["moderations"] < 10:  # 5 jobs inside each daemon
        await asyncio.sleep(0.01)
    a.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    db = tmp_path / "data" / "cwall.db"
    while set(statuses(db).values()) != {"published"}:
        assert time.monotonic() - killed_at < 30, statuses(db)
        await asyncio.sleep(0.2)
    took = time.monotonic() - killed_at
    assert b.kill(signal.SIGTERM) == 0
    log_a, log_b = a.log.read_text(), b.log.read_text()
    published = [cid for cid in ids for line in (log_a + log_b).splitlines()
                 if '"event":"confession_published"' in line and f'"confession_id":{cid},' in line]
    assert sorted(published) == ids  # each published exactly once
    stalled = log_b.count('"event":"job_stalled"')
    print(f"kill -9 of A with 5 active jobs: B took over {stalled}, all {len(ids)} published {took:.1f} s later")
    assert stalled == 5 and '"event":"job_stalled"' not in log_a


async def test_sigterm_lets_active_jobs_finish_and_exits_0(
        tmp_path: Path, daemons: Any, fake_ai: Any, redis_server: Any, redis_prefix: str) -> None:
    fake_ai.latency = 0.7
    d = daemons(tmp_path, **redis_env(redis_server, redis_prefix, fake_ai))
    await d.start()
    ids = await post_many(d.url, 3)
    while fake_ai.calls["moderations"] < 3:
        await asyncio.sleep(0.01)
    assert await d.stop(signal.SIGTERM) == 0
    assert statuses(tmp_path / "data" / "cwall.db") == {cid: "published" for cid in ids}


async def test_daily_limit_is_exact_across_two_processes(
        tmp_path: Path, daemons: Any, fake_ai: Any, redis_server: Any, redis_prefix: str) -> None:
    env = {**redis_env(redis_server, redis_prefix, fake_ai), "CWALLD_LIMITS_DAILY_CONFESSIONS": "5"}
    a, b = daemons(tmp_path, **env), daemons(tmp_path, **env)
    await a.start()
    await b.start()
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", a.url + "/api/v1/auth/register", json={"username": "hizli", "password": "password123"})
        results = await asyncio.gather(*(
            call(s, "POST", (a if i % 2 else b).url + "/api/v1/confessions", body["token"],
                 json={"content": f"Aynı anda gönderilen itiraf {i}", "category": "funny"}) for i in range(20)))
    codes = [status for status, _ in results]
    assert codes.count(202) == 5 and codes.count(429) == 15
    assert len(statuses(tmp_path / "data" / "cwall.db")) == 5
