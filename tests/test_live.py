"""Live updates (GET /api/v1/events): what readers see change, replay by Last-Event-ID, across processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from cwalld import config as configmod
from cwalld.live.local import LocalLog
from tests.conftest import Api, test_config
from tests.test_admin import admin_token
from tests.test_redis_daemon import redis_env


async def next_event(stream: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next event of an SSE stream (comments and id-only blocks skipped): id, event, data."""
    fields: dict[str, Any] = {}
    while True:
        line = (await asyncio.wait_for(stream.content.readline(), timeout)).decode().rstrip("\n")
        if line == "":
            if "data" in fields:
                fields["data"] = orjson.loads(fields["data"])
                return fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def test_published_empathy_removed_reach_a_stream_and_a_reconnect_replays(client: Any) -> None:
    api = Api(client)
    stream = await client.get("/api/v1/events")
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    author, reader = await api.register("yazar_ali"), await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]  # anonymous by default
    published = await next_event(stream)
    assert published["event"] == "published" and published["data"]["id"] == cid
    assert published["data"]["status"] == "published" and published["data"]["ai_response"]
    assert published["data"]["author"] is None and b"yazar_ali" not in orjson.dumps(published)  # anonymity
    await client.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
    empathy = await next_event(stream)
    assert (empathy["event"], empathy["data"]) == ("empathy", {"id": cid, "empathy_count": 1})
    stream.close()

    # while nobody listens: empathy taken back, then an admin hides it
    await client.delete(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
    admin = await admin_token(api)
    assert (await client.post(f"/api/v1/admin/confessions/{cid}/hide", headers=api.auth(admin))).status == 200
    again = await client.get("/api/v1/events", headers={"Last-Event-ID": published["id"]})
    missed = [await next_event(again) for _ in range(3)]
    assert [(e["event"], e["data"]) for e in missed] == [
        ("empathy", {"id": cid, "empathy_count": 1}),  # as this process sent it
        ("empathy", {"id": cid, "empathy_count": 0}),  # rendered when first asked for: the count then
        ("removed", {"id": cid})]
    assert [e["id"] for e in missed] == sorted({e["id"] for e in missed}, key=lambda i: tuple(map(int, i.split("-"))))
    assert missed[0]["id"] == empathy["id"]  # the replay starts right after what the client had
    again.close()


async def test_a_bad_or_stale_last_event_id(client: Any) -> None:
    r = await client.get("/api/v1/events", headers={"Last-Event-ID": "../../etc"})
    assert r.status == 422 and (await r.json())["error"]["fields"] == {"Last-Event-ID": "not an event id this API sent"}
    stale = await client.get("/api/v1/events", headers={"Last-Event-ID": "1000-0"})  # 1970: past the window
    assert (await next_event(stale))["event"] == "reset"  # reload the page: no silent gap
    stale.close()


async def test_streams_per_client_are_bounded(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = configmod.replace(test_config(tmp_path, fake_ai.url), events={"max_per_client": 2})
    client = await make_client(cfg)
    first, second = await client.get("/api/v1/events"), await client.get("/api/v1/events")
    third = await client.get("/api/v1/events")
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert (await third.json())["error"]["code"] == "too_many_streams" and "Retry-After" in third.headers
    first.close()
    for _ in range(100):  # the closed stream's place frees up once the server sees it go
        fourth = await client.get("/api/v1/events")
        if fourth.status == 200:
            break
        await asyncio.sleep(0.05)
    assert fourth.status == 200
    fourth.close()
    second.close()


async def test_heartbeat_comments_keep_an_idle_stream_open(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = configmod.replace(test_config(tmp_path, fake_ai.url), events={"heartbeat": 0.2})
    client = await make_client(cfg)
    stream = await client.get("/api/v1/events")
    lines = [(await asyncio.wait_for(stream.content.readline(), 2)).decode() for _ in range(5)]
    assert lines[0] == "retry: 2000\n" and lines[1].startswith("id: ") and ": keep-alive\n" in lines
    stream.close()


async def test_an_event_crosses_processes_through_redis(tmp_path: Path, daemons: Any, redis_server: Any,
                                                        redis_prefix: str, fake_ai: Any) -> None:
    """What process B does reaches a browser connected to process A; a reconnect to B with A's
    Last-Event-ID gets what it missed (the ids are the shared stream's)."""
    env = {**redis_env(redis_server, redis_prefix, fake_ai), "CWALLD_STORAGE_PATH": str(tmp_path / "shared.db")}
    a, b = daemons(tmp_path, **env), daemons(tmp_path, **env, CWALLD_SERVER_CONTROL_SOCKET=str(tmp_path / "b.sock"))
    await a.start()
    await b.start()
    async with aiohttp.ClientSession() as s:
        on_a = await s.get(a.url + "/api/v1/events")
        token = (await (await s.post(b.url + "/api/v1/auth/register",
                                     json={"username": "ayse", "password": "password123"})).json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        posted = await s.post(b.url + "/api/v1/confessions", headers=auth,
                              json={"content": "Başka bir süreçte yazılan itiraf.", "category": "other"})
        cid = (await posted.json())["confession"]["id"]
        published = await next_event(on_a, timeout=15)  # by A's consumers or B's
        assert published["event"] == "published" and published["data"]["id"] == cid
        assert published["data"]["author"] is None
        assert (await s.put(f"{b.url}/api/v1/confessions/{cid}/empathy", headers=auth)).status == 200
        empathy = await next_event(on_a)  # made by B's request handler: it crossed
        assert (empathy["event"], empathy["data"]) == ("empathy", {"id": cid, "empathy_count": 1})
        on_a.close()
        assert (await s.delete(f"{b.url}/api/v1/confessions/{cid}/empathy", headers=auth)).status == 200
        on_b = await s.get(b.url + "/api/v1/events", headers={"Last-Event-ID": empathy["id"]})
        missed = await next_event(on_b)
        assert (missed["event"], missed["data"]) == ("empathy", {"id": cid, "empathy_count": 0})
        on_b.close()


async def test_a_stop_ends_open_streams_at_once(tmp_path: Path, daemons: Any) -> None:
    """An open stream must not hold a stop for the HTTP drain (10 s): it ends, the client reconnects."""
    import time

    d = daemons(tmp_path)
    await d.start()
    async with aiohttp.ClientSession() as s:
        stream = await s.get(d.url + "/api/v1/events")
        assert stream.status == 200
        started = time.monotonic()
        assert await d.stop() == 0
        assert time.monotonic() - started < 5
        assert await asyncio.wait_for(stream.content.read(), 2) is not None  # ended, not hanging


async def test_a_reload_of_the_replay_window_applies_to_the_log(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """[events].replay_seconds was read into the log at start: a reload changed the setting
    the streams saw but not the window the log kept."""
    from cwalld.http.keys import WALL

    cfg = test_config(tmp_path, fake_ai.url)
    client = await make_client(cfg)
    api = Api(client)
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    await api.wait_status(cid, token)
    stream = await client.get("/api/v1/events", headers={"Last-Event-ID": "1-0"})  # long ago, in a 300 s window?
    assert (await next_event(stream))["event"] == "reset"
    stream.close()
    entries = client.app[WALL].live.log.entries
    client.app[WALL].reconfigure(configmod.replace(cfg, events={"replay_seconds": 0.05}))
    await asyncio.sleep(0.1)
    stream = await client.get("/api/v1/events", headers={"Last-Event-ID": entries[0].id})
    assert (await next_event(stream))["event"] == "reset"  # past the new window
    stream.close()


async def test_a_silent_redis_does_not_hold_up_what_makes_an_event(tmp_path: Path, fake_ai: Any, make_client: Any,
                                                                   redis_server: Any, redis_prefix: str) -> None:
    """The live log's append was awaited in the domain event chain: with Redis silent, every
    empathy and every publish waited for the socket timeout (2 s)."""
    import time

    from tests.proxy import SilentProxy

    proxy = SilentProxy(redis_server.port)
    await proxy.start()
    cfg = configmod.replace(test_config(tmp_path, fake_ai.url), redis={"url": proxy.url, "prefix": redis_prefix})
    api = Api(await make_client(cfg))
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    await api.wait_status(cid, token)
    proxy.silence()
    started = time.monotonic()
    r = await api.c.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(token))
    assert r.status == 200 and time.monotonic() - started < 1.0
    proxy.heal()
    await proxy.stop()


async def test_the_console_stream_sends_queue_counts_when_they_change_at_most_once_a_second(client: Any) -> None:
    api = Api(client)
    author = await api.register()
    assert (await client.get("/api/v1/admin/events")).status == 401
    assert (await client.get("/api/v1/admin/events", headers=api.auth(author))).status == 403
    admin = await admin_token(api)
    stream = await client.get("/api/v1/admin/events", headers=api.auth(admin))
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    first = await next_event(stream)
    assert first["event"] == "queue" and first["data"]["completed"] == 0 and "id" not in first
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):  # five jobs done, and ten wall events that must not wake a read each
        await api.post(author)
    seen = [first["data"]]
    while seen[-1]["completed"] < 5:
        seen.append((await next_event(stream))["data"])
    elapsed = loop.time() - started
    assert len(seen) - 1 <= elapsed + 1, (seen, elapsed)  # at most once a second
    assert all(a != b for a, b in zip(seen, seen[1:]))  # only when they change
    stream.close()


async def test_a_restarted_process_sends_reset_for_ids_from_before_it_began() -> None:
    """Without Redis the log lives in the process: after a restart it had answered an older id with
    only its own entries, a silent gap (what the client missed before the restart is gone)."""
    old = LocalLog()
    await old.append("empathy", 1, 300)
    last = await old.head()
    await old.append("empathy", 1, 300)  # missed by a client that lost its connection; then a restart
    await asyncio.sleep(0.01)
    new = LocalLog()
    assert await new.since(last, 300) is None  # reset: reload the feed
    fresh = await new.head()  # a client that connected to the new process and saw nothing yet
    await new.append("removed", 2, 300)
    assert [e.kind for e in await new.since(fresh, 300) or []] == ["removed"]


async def test_stopping_the_redis_follower_just_after_it_heard_entries_ends_at_once(
        redis_server: Any, redis_prefix: str) -> None:
    """On Python 3.11 a cancel that lands as redis-py's send (asyncio.wait_for) completes is
    swallowed: the follower went on into a 15 s blocking XREAD and the next, and the daemon's stop
    waited for ever (test_sigterm_lets_active_jobs_finish_and_exits_0 hung 15 runs in 25)."""
    from cwalld.config import Events
    from cwalld.events import Event
    from cwalld.live import Live
    from cwalld.live.redis import RedisLog

    url = f"redis://127.0.0.1:{redis_server.port}/0"
    slow = []
    for _ in range(10):
        live = Live(Events(), None, RedisLog(url, redis_prefix))  # type: ignore[arg-type]  # no replay here
        live.start()
        await asyncio.sleep(0.02)  # the follower is in its XREAD
        for n in range(3):
            await live.follow(Event("confession_published", n, "work"))
        await asyncio.gather(*live._appends)
        started = time.monotonic()
        stopped, _ = await asyncio.wait({asyncio.ensure_future(live.stop())}, timeout=3)
        slow += [] if stopped and time.monotonic() - started < 1.5 else [time.monotonic() - started]
    assert slow == []
