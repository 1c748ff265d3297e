"""Three cwalld processes as three hosts: separate working directories, separate ports, nothing
shared but PostgreSQL and Redis. One takes the posts, one runs the AI jobs, one serves the feed
and the live events; all three run the scheduler. The job host is killed with -9 under load."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.test_live import next_event
from tests.test_redis_daemon import redis_env


async def test_three_hosts_share_only_postgresql_and_redis(tmp_path: Path, daemons: Any, redis_server: Any,
                                                           redis_prefix: str, fake_ai: Any, postgres_url: str) -> None:
    fake_ai.latency = 0.05
    env = {**redis_env(redis_server, redis_prefix, fake_ai), "CWALLD_STORAGE_URL": postgres_url,
           "CWALLD_POPULAR_SCHEDULE": "* * * * * *", "CWALLD_POPULAR_THRESHOLD": "2",
           "CWALLD_POPULAR_MIN_ACCOUNT_AGE_HOURS": "0", "CWALLD_LIMITS_DAILY_CONFESSIONS": "1000"}
    hosts = {}
    for name, roles in (("posts", ["http", "scheduler"]), ("jobs", ["consumers", "scheduler"]),
                        ("feed", ["http", "scheduler"])):
        (tmp_path / name).mkdir()
        hosts[name] = daemons(tmp_path / name, CWALLD_SERVER_ROLES=json.dumps(roles), **env)
    await asyncio.gather(*(d.start() for d in hosts.values()))
    posts, jobs, feed = hosts["posts"], hosts["jobs"], hosts["feed"]

    async with aiohttp.ClientSession() as s:
        stream = await s.get(feed.url + "/api/v1/events")
        tokens = []
        for i in range(4):
            r = await s.post(posts.url + "/api/v1/auth/register", json={"username": f"host_{i}", "password": "password123"})
            tokens.append((await r.json())["token"])

        async def post(i: int) -> int | None:
            r = await s.post(posts.url + "/api/v1/confessions", headers={"Authorization": f"Bearer {tokens[i % 4]}"},
                             json={"content": f"Üç makinede yazılan itiraf {i}", "category": "other",
                                   "anonymous": i != 0})
            assert r.status in (202, 503), await r.text()
            return (await r.json())["confession"]["id"] if r.status == 202 else None

        accepted: list[int | None] = []
        for wave in range(6):  # 120 posts, 20 at a time; the job host dies after the second wave
            accepted += await asyncio.gather(*(post(wave * 20 + i) for i in range(20)))
            if wave == 1:
                assert jobs.kill() == -9
            if wave == 3:
                await jobs.start()  # the host comes back; its leased jobs are taken over
        ids = [cid for cid in accepted if cid is not None]
        assert len(ids) == 120  # the database and the queue were up the whole time: every post accepted

        published: Counter[int] = Counter()
        while set(published) < set(ids):
            event = await next_event(stream, timeout=30)
            if event["event"] == "published":
                published[event["data"]["id"]] += 1
        await asyncio.sleep(1)  # a second publication would come now
        while True:  # drain what else is on the stream, without waiting for more
            try:
                event = await next_event(stream, timeout=0.5)
            except TimeoutError:
                break
            if event["event"] == "published":
                published[event["data"]["id"]] += 1
        stream.close()
        assert set(published) == set(ids) and set(published.values()) == {1}  # nothing lost, nothing twice

        seen, cursor = [], None
        while True:
            page = await (await s.get(feed.url + "/api/v1/confessions?limit=50" + (f"&cursor={cursor}" if cursor else ""))).json()
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)

        named = ids[0]  # by host_0, not anonymous: its author gets the badge
        for token in tokens[1:3]:
            r = await s.put(f"{posts.url}/api/v1/confessions/{named}/empathy", headers={"Authorization": f"Bearer {token}"})
            assert r.status == 200
        for _ in range(100):  # three schedulers tick every second; one of them marks it
            me = (await (await s.get(feed.url + "/api/v1/me", headers={"Authorization": f"Bearer {tokens[0]}"})).json())["user"]
            if me.get("badges"):
                break
            await asyncio.sleep(0.1)
        assert [b["code"] for b in me["badges"]] == ["viral_confession"]
        await asyncio.sleep(2.5)  # more ticks of three schedulers

    db = await asyncpg.connect(postgres_url)
    try:
        runs = await db.fetch("SELECT scheduled_for, result FROM job_runs WHERE name = 'popular' AND result IS NOT NULL")
        badges = await db.fetchval("SELECT count(*) FROM badges")
    finally:
        await db.close()
    results = [json.loads(r["result"]) for r in runs]
    assert len(runs) >= 3 and len({r["scheduled_for"] for r in runs}) == len(runs)  # each tick ran once
    assert sum(r["newly_popular"] for r in results) == 1 and sum(r["badges_awarded"] for r in results) == 1
    assert badges == 1
    logs = "".join((tmp_path / name).joinpath(f"daemon-{d.port}.log").read_text() for name, d in hosts.items())
    assert logs.count("confession_published") == 120 and "Traceback" not in logs
