"""Never stale after a change: every domain event × every view, read right after the event in
the process that made the change and in a second one, equals what a process without any cache
reads from the same database (issue 10, defect 6 and the "invalidation is data" design)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from cwalld.accounts import create_user
from cwalld.events import KINDS, Event
from cwalld.http.keys import SCHEDULER, WALL
from tests.conftest import Api, test_config

VIEWS = ["/api/v1/confessions", "/api/v1/confessions?category=love", "/api/v1/confessions?category=school",
         "/api/v1/confessions/popular", "/api/v1/stats", "/api/v1/me/confessions", "/api/v1/me"]


async def test_stats_count_a_new_user_at_once(api: Api) -> None:
    """Defect 6: registration bumped nothing; /stats showed the old user count for an hour."""
    await api.register()
    assert (await (await api.c.get("/api/v1/stats")).json())["users"] == 1
    await api.register()
    assert (await (await api.c.get("/api/v1/stats")).json())["users"] == 2


async def test_the_popular_job_refreshes_stats_and_the_authors_list(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """Defect 6: the popular job bumped only feeds and popular: /stats kept the old popular
    count for up to an hour, the author's own list the old is_popular for ten minutes."""
    api = Api(await make_client(test_config(tmp_path, fake_ai.url,
                                                        popular={"threshold": 1, "min_account_age_hours": 0})))
    author, reader = await api.register(), await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    await api.c.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
    assert (await (await api.c.get("/api/v1/stats")).json())["confessions"]["popular"] == 0
    assert (await (await api.c.get("/api/v1/me/confessions", headers=api.auth(author))).json())["items"][0]["is_popular"] is False
    await api.c.app[SCHEDULER].run_now("popular")
    assert (await (await api.c.get("/api/v1/stats")).json())["confessions"]["popular"] == 1
    assert (await (await api.c.get("/api/v1/me/confessions", headers=api.auth(author))).json())["items"][0]["is_popular"] is True


async def test_every_event_leaves_every_view_fresh_in_every_process(
        tmp_path: Path, fake_ai: Any, make_client: Any, redis_server: Any, redis_prefix: str) -> None:
    def cfg(name: str, prefix: str = redis_prefix, **extra: Any) -> Any:
        return test_config(tmp_path, fake_ai.url, redis={"url": redis_server.url, "prefix": prefix},
                           server={"control_socket": str(tmp_path / f"{name}.sock")},
                           moderation={"auto_hide_reports": 2, "report_min_account_age_hours": 0},
                           popular={"threshold": 1, "min_account_age_hours": 0},
                           limits={"daily_confessions": 50},
                           privacy={"on_account_delete": "detach"},  # the walk's leaver keeps its confession
                           **extra)

    a = Api(await make_client(cfg("a")))
    b = Api(await make_client(cfg("b")))
    # The reference reads the same database with no cache, and takes no job of A's and B's queue
    # (a process without a cache cannot tell the others' caches what its jobs changed).
    fresh = Api(await make_client(cfg("fresh", prefix=redis_prefix + "fresh:", cache={"enabled": False})))
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    for api in (a, b, fresh):
        api.c.app[WALL].events.subscribe(record)
    await a.settled()
    await create_user(a.c.app[WALL].storage, "boss", "password123", admin=True)
    r = await a.c.post("/api/v1/auth/login", json={"username": "boss", "password": "password123"})
    boss = (await r.json())["token"]
    author = await a.register("yazar")
    reader, other = await a.register("okur"), await b.register("diger")

    async def views(api: Api) -> dict[str, Any]:
        out = {}
        for path in VIEWS:
            r = await api.c.get(path, headers=api.auth(author))
            assert r.status == 200, (path, await r.text())
            out[path] = orjson.loads(await r.read())
        return out

    async def step(what: str, action: Any) -> None:
        await views(a)  # both processes have every view cached ...
        await views(b)
        await action()  # ... when the change happens (through process A)
        want = await views(fresh)
        for name, api in (("same process", a), ("second process", b)):
            got = await views(api)
            for path in VIEWS:
                assert got[path] == want[path], f"after {what}, {path} in the {name} is stale"

    async def published(content: str, category: str = "love") -> int:
        cid = (await (await a.post(author, content=content, category=category)).json())["confession"]["id"]
        await a.wait_status(cid, author)
        return cid

    first: dict[str, int] = {}

    async def create() -> None:
        first["id"] = (await (await a.post(author, content="İlk itirafım bu, kimse bilmiyor.")).json())["confession"]["id"]
        await asyncio.sleep(0)

    fake_ai.latency = 3.0  # longer than a job's timeout: the confession stays pending while views are read
    await step("confession_created", create)
    fake_ai.latency = 0.0
    await step("confession_published", lambda: a.wait_status(first["id"], author))
    await step("confession_rejected", lambda: published_or_rejected(a, author, "Nefret dolu bir itiraf [flag:hate]"))
    cid = await published("Okulda herkesin önünde düştüm.", "school")
    await step("empathy_added", lambda: a.c.put(f"/api/v1/confessions/{cid}/empathy", headers=a.auth(reader)))
    await step("empathy_removed", lambda: a.c.delete(f"/api/v1/confessions/{cid}/empathy", headers=a.auth(reader)))
    await step("empathy_added again", lambda: a.c.put(f"/api/v1/confessions/{cid}/empathy", headers=a.auth(reader)))
    await step("marked_popular, badge_awarded", lambda: a.c.app[SCHEDULER].run_now("popular"))
    await step("reported", lambda: a.c.post(f"/api/v1/confessions/{cid}/report", headers=a.auth(reader), json={}))
    await step("confession_hidden (reports)",
               lambda: a.c.post(f"/api/v1/confessions/{cid}/report", headers=a.auth(other), json={}))
    await step("confession_restored", lambda: a.c.post(f"/api/v1/admin/confessions/{cid}/restore", headers=a.auth(boss)))
    await step("confession_hidden (admin)", lambda: a.c.post(f"/api/v1/admin/confessions/{cid}/hide", headers=a.auth(boss)))
    await step("confession_restored again",
               lambda: a.c.post(f"/api/v1/admin/confessions/{cid}/restore", headers=a.auth(boss)))
    await step("confession_deleted", lambda: a.c.delete(f"/api/v1/confessions/{first['id']}", headers=a.auth(author)))
    fake_ai.script.extend([500] * 4)  # published with a fallback reply, then regenerated
    fallback = await published("Yapay zekâ kesintisinde yazılan itiraf.", "work")

    async def regenerate() -> None:
        r = await a.c.post("/api/v1/admin/ai/regenerate", json={"since": "1h"}, headers=a.auth(boss))
        assert (await r.json())["regeneration"]["total"] == 1
        while (await (await a.c.get("/api/v1/admin/ai/regenerate", headers=a.auth(boss))).json())["regeneration"]["running"]:
            await asyncio.sleep(0.02)
        assert (await a.confession(fallback))["ai_fallback"] is False
    await step("reply_regenerated", regenerate)
    await step("user_registered", lambda: a.register("yeni_gelen"))
    await step("admin_granted", lambda: a.c.post("/api/v1/admin/users/okur/admin", headers=a.auth(boss)))
    await step("admin_revoked", lambda: a.c.delete("/api/v1/admin/users/okur/admin", headers=a.auth(boss)))
    leaver = await a.register("gidecek")
    left = (await (await a.post(leaver, content="Hesabımla birlikte gidecek bir itiraf.", anonymous=False)).json())
    await a.wait_status(left["confession"]["id"], leaver)
    assert (await a.c.put(f"/api/v1/confessions/{cid}/empathy", headers=a.auth(leaver))).status == 200
    await step("account_deleted, confession_detached (its named confession kept with no author)",
               lambda: a.c.delete("/api/v1/me", headers=a.auth(leaver), json={"password": "password123"}))
    assert {e.kind for e in seen} == set(KINDS)  # the walk covered every event there is


async def published_or_rejected(api: Api, token: str, content: str) -> None:
    cid = (await (await api.post(token, content=content)).json())["confession"]["id"]
    await api.wait_status(cid, token, "rejected")
