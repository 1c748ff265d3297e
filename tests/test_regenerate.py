"""Fallback replies made good later: ``cwalld ai regenerate`` and ``POST /admin/ai/regenerate``
(issue 12 §4)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from cwalld.config import DEFAULT_CRISIS
from tests.conftest import Api, cwalld, test_config
from tests.test_admin import admin_token
from tests.test_daemon import call

NO_BREAKER = {"breaker_failures": 1000}  # the outage below is over at once; no cooldown to wait for
CRISIS = "Her şey anlamsız, kendime zarar vermeyi planlıyorum."


async def during_an_outage(api: Api, fake_ai: Any, token: str, texts: list[str]) -> list[int]:
    """Publish ``texts`` while the AI fails: each gets a fallback reply."""
    fake_ai.script.extend([500] * 4 * len(texts))
    fake_ai.moderation_script.extend([500] * 5 * len(texts))
    ids = []
    for text in texts:
        cid = (await (await api.post(token, content=text)).json())["confession"]["id"]
        assert (await api.wait_status(cid, token))["ai_fallback"] is True
        ids.append(cid)
    fake_ai.script.clear()
    fake_ai.moderation_script.clear()
    return ids


async def until_done(api: Api, admin: str) -> dict[str, Any]:
    for _ in range(500):
        run = (await (await api.c.get("/api/v1/admin/ai/regenerate", headers=api.auth(admin))).json())["regeneration"]
        if not run["running"]:
            return dict(run)
        await asyncio.sleep(0.02)
    raise AssertionError(f"regeneration still running: {run}")


async def test_fallback_replies_are_replaced_in_place_once(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, ai={"regenerate_per_minute": 6000, **NO_BREAKER})))
    author, admin = await api.register(), await admin_token(api)
    ids = await during_an_outage(api, fake_ai, author, ["Kesintide yazılan ilk itiraf.", CRISIS,
                                                         "Kesintide yazılan üçüncü itiraf."])
    before = (await (await api.c.get("/api/v1/confessions")).json())["items"]  # cached now
    regen = lambda body: api.c.post("/api/v1/admin/ai/regenerate", json=body, headers=api.auth(admin))  # noqa: E731

    r = await regen({"since": "1d", "dry_run": True})
    assert r.status == 202 and (await r.json())["regeneration"]["total"] == 3
    assert all(c["ai_fallback"] for c in (await (await api.c.get("/api/v1/confessions")).json())["items"])
    chats = fake_ai.calls["chat"]
    r = await regen({"since": "1d"})
    assert r.status == 202 and (await r.json())["regeneration"]["total"] == 3
    run = await until_done(api, admin)
    assert run["done"] == 3 and run["outcomes"] == {"replaced": 3, "hidden": 0, "kept": 0, "failed": 0}
    assert fake_ai.calls["chat"] - chats == 3

    after = (await (await api.c.get("/api/v1/confessions")).json())["items"]
    assert [c["id"] for c in after] == [c["id"] for c in before]  # each keeps its place
    assert [c["published_at"] for c in after] == [c["published_at"] for c in before]
    assert all(c["ai_fallback"] is False and c["ai_response"].startswith("Seni duyuyoruz") for c in after)
    crisis = await api.confession(ids[1])
    assert crisis["ai_response"].endswith(DEFAULT_CRISIS) and crisis["ai_response"].count(DEFAULT_CRISIS) == 1

    r = await regen({"since": "all"})  # idempotent: nothing is left to replace
    assert (await r.json())["regeneration"]["total"] == 0 and fake_ai.calls["chat"] - chats == 3


async def test_moderation_still_decides_and_the_rate_is_bounded(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, ai={"regenerate_per_minute": 150, **NO_BREAKER})))
    author, admin = await api.register(), await admin_token(api)
    hateful, *ordinary = await during_an_outage(api, fake_ai, author, [
        "Kesintide moderasyonsuz yayımlanan metin [flag:hate]", "Kesintide yazılan sıradan itiraf bir.",
        "Kesintide yazılan sıradan itiraf iki."])
    fake_ai.call_times.clear()
    await api.c.post("/api/v1/admin/ai/regenerate", json={}, headers=api.auth(admin))  # since: 7d
    run = await until_done(api, admin)
    assert run["outcomes"] == {"replaced": 2, "hidden": 1, "kept": 0, "failed": 0}
    assert (await api.confession(hateful)) == {"http_status": 404}  # hidden: an admin can restore it
    gaps = [b - a for a, b in zip(fake_ai.call_times, fake_ai.call_times[1:])]
    assert len(gaps) == 1 and gaps[0] >= 0.39, gaps  # 150 a minute: one each 0.4 s at most


async def test_new_confessions_come_first(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = test_config(tmp_path, fake_ai.url, queue={"concurrency": 1}, ai={"regenerate_per_minute": 6000, **NO_BREAKER})
    api = Api(await make_client(cfg))
    author, admin = await api.register(), await admin_token(api)
    (old,) = await during_an_outage(api, fake_ai, author, ["Eskiden yedek yanıt almış itiraf."])
    fake_ai.latency, fake_ai.asked = 0.2, []
    new = [(await (await api.post(author, content=f"Yeni gelen itiraf {i}.")).json())["confession"]["id"]
           for i in range(3)]  # one runs, two wait in the queue
    await api.c.post("/api/v1/admin/ai/regenerate", json={}, headers=api.auth(admin))
    await until_done(api, admin)
    for cid in new:
        await api.wait_status(cid, author)
    assert fake_ai.asked.index("Eskiden yedek yanıt almış itiraf.") >= 2, fake_ai.asked  # after the waiting ones
    assert (await api.confession(old))["ai_fallback"] is False


async def test_the_cli_shows_progress_and_the_count(tmp_path: Path, fake_ai: Any, daemons: Any) -> None:
    d = daemons(tmp_path, CWALLD_AI_API_KEY="test-key", CWALLD_AI_BASE_URL=fake_ai.url,
                CWALLD_QUEUE_RETRIES="0", CWALLD_AI_REGENERATE_PER_MINUTE="600", CWALLD_AI_BREAKER_FAILURES="1000")
    await d.start()
    fake_ai.script.extend([500] * 3)
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", d.url + "/api/v1/auth/register", json={"username": "ayse", "password": "password123"})
        for i in range(3):
            status, _ = await call(s, "POST", d.url + "/api/v1/confessions", body["token"],
                                   json={"content": f"Yapay zekâ yokken yazdığım itiraf {i}.", "category": "work"})
            assert status == 202
        deadline = time.monotonic() + 10
        while True:
            _, mine = await call(s, "GET", d.url + "/api/v1/me/confessions", body["token"])
            if [c["ai_fallback"] for c in mine["items"] if c["status"] == "published"] == [True] * 3:
                break
            assert time.monotonic() < deadline, mine
            await asyncio.sleep(0.05)
    run = lambda *args: asyncio.to_thread(cwalld, *args, cwd=tmp_path, env=d.env)  # noqa: E731 - the fake AI answers meanwhile
    r = await run("ai", "regenerate", "--dry-run")
    assert r.returncode == 0 and r.stdout.strip() == "would regenerate 3 fallback replies (since 7d)", r
    r = await run("ai", "regenerate", "--since", "1h")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0, r
    assert lines[0] == "regenerating 0 / 3" and "regenerating 3 / 3" in lines, lines
    assert lines[-1] == "replaced 3 of 3 fallback replies (0 hidden by moderation, 0 unchanged, 0 failed: run again later)"
    r = await run("ai", "regenerate", "--since", "all")  # nothing left: no progress lines, just the count
    assert r.returncode == 0 and r.stdout.splitlines() == [
        "replaced 0 of 0 fallback replies (0 hidden by moderation, 0 unchanged, 0 failed: run again later)"], r
    r = await run("ai", "regenerate", "--since", "forever")
    assert r.returncode == 1 and "since" in r.stderr
