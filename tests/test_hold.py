"""When moderation cannot answer: publish (the default) or hold for an admin, tried again with
backoff by the recovery job (issue 12 §2)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import structlog

from cwalld import replies
from cwalld.config import DEFAULT_CRISIS
from cwalld.http.keys import WALL
from tests.conftest import Api, test_config
from tests.test_admin import admin_token


@pytest.fixture
async def held(tmp_path: Path, fake_ai: Any, make_client: Any) -> Api:
    cfg = test_config(tmp_path, fake_ai.url, moderation={"on_unavailable": "hold"}, queue={"sweep_grace": 0.0},
                      ai={"breaker_failures": 1000},  # each outage below is scripted call by call
                      scheduler={"recovery": "0 0 1 1 *"})  # the tests run recovery themselves, when they mean to
    return Api(await make_client(cfg))


async def post(api: Api, token: str, content: str) -> int:
    return int((await (await api.post(token, content=content)).json())["confession"]["id"])


async def wait_queue(api: Api, **expect: int) -> None:
    for _ in range(250):
        stats = await api.c.app[WALL].queue.stats()
        if all(stats[k] == v for k, v in expect.items()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"queue never showed {expect}: {stats}")


async def test_without_a_moderations_endpoint_confessions_wait_for_an_admin(held: Api, fake_ai: Any) -> None:
    fake_ai.moderation_script.extend([404] * 10)
    author, admin = await held.register(), await admin_token(held)
    with structlog.testing.capture_logs() as logs:
        ordinary = await post(held, author, "Yerel modelde moderasyon yok, bu itiraf bekliyor.")
        crisis = await post(held, author, "Her şey anlamsız, kendime zarar vermeyi planlıyorum.")
        await wait_queue(held, held=2)
    assert fake_ai.calls["chat"] == 0  # nothing is answered before moderation or an admin decides
    assert [e["confession_id"] for e in logs if e["event"] == "confession_held"] == [ordinary, crisis]
    assert (await held.confession(ordinary, author))["status"] == "pending"
    assert (await (await held.c.get("/api/v1/confessions")).json())["items"] == []
    r = await held.c.get("/api/v1/admin/confessions?status=pending", headers=held.auth(admin))
    assert {c["id"] for c in (await r.json())["items"]} == {ordinary, crisis}

    r = await held.c.post(f"/api/v1/admin/confessions/{crisis}/publish", headers=held.auth(admin))
    assert r.status == 200
    c = (await r.json())["confession"]
    assert c["status"] == "published" and c["ai_fallback"] is True and c["ai_response"].endswith(DEFAULT_CRISIS)
    r = await held.c.post(f"/api/v1/admin/confessions/{ordinary}/reject", headers=held.auth(admin))
    assert r.status == 200 and (await r.json())["confession"]["status"] == "rejected"
    assert (await held.confession(ordinary, author))["rejection_reason"] == "admin"
    assert [c["id"] for c in (await (await held.c.get("/api/v1/confessions")).json())["items"]] == [crisis]
    for action in ("publish", "reject"):  # a decision is taken once
        r = await held.c.post(f"/api/v1/admin/confessions/{crisis}/{action}", headers=held.auth(admin))
        assert r.status == 404
    r = await held.c.post(f"/api/v1/admin/confessions/{crisis}/publish", headers=held.auth(author))
    assert r.status == 403


async def test_a_held_confession_is_tried_again_later_each_time(held: Api, fake_ai: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies, "HOLD_FIRST", 0.5)
    fake_ai.moderation_script.extend([500] * 10)  # an outage: 4 attempts and give_up's try, twice
    author, admin = await held.register(), await admin_token(held)
    cid = await post(held, author, "Moderasyon kesintisinde bekleyen itiraf.")
    await wait_queue(held, held=1)
    run = lambda: held.c.post("/api/v1/admin/jobs/recovery/run", headers=held.auth(admin))  # noqa: E731
    assert (await (await run()).json())["result"] == {"queued": 0}  # not before its time
    await asyncio.sleep(0.6)
    assert (await (await run()).json())["result"] == {"queued": 1}
    await wait_queue(held, held=1, waiting=0, active=0, delayed=0)
    with sqlite3.connect(tmp_path / "cwall.db") as db:
        (holds,) = db.execute("SELECT holds FROM confessions").fetchone()
    assert holds == 2 and (await held.confession(cid, author))["status"] == "pending"
    assert (await (await run()).json())["result"] == {"queued": 0}  # the second wait is twice as long
    await asyncio.sleep(1.1)
    assert (await (await run()).json())["result"] == {"queued": 1}  # moderation answers again now
    c = await held.wait_status(cid, author)
    assert c["ai_fallback"] is False and fake_ai.calls["chat"] == 1


async def test_publish_is_the_default_and_says_so(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url)))
    fake_ai.moderation_script.extend([500] * 5)
    token = await api.register()
    with structlog.testing.capture_logs() as logs:
        cid = await post(api, token, "Moderasyon kesintisinde yayımlanan itiraf.")
        c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is True
    assert [e["confession_id"] for e in logs if e["event"] == "published_unmoderated"] == [cid]
