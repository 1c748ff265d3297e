"""The AI pipeline end to end: the AI adapter → fake server → queue retries → SQLite."""

from __future__ import annotations

import asyncio

from cwalld.ai import FALLBACKS
from cwalld.http.keys import WALL
from tests.conftest import Api, test_config


async def test_reply_is_generated_and_published(api: Api, fake_ai) -> None:  # type: ignore[no-untyped-def]
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_response"].startswith("Seni duyuyoruz") and c["ai_fallback"] is False
    assert fake_ai.calls["moderations"] == 1 and fake_ai.calls["chat"] == 1


async def test_retries_follow_the_backoff_then_succeed(api: Api, fake_ai) -> None:  # type: ignore[no-untyped-def]
    fake_ai.script.extend([500, 429])
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is False and fake_ai.calls["chat"] == 3
    t = fake_ai.call_times
    # backoff is [0.05, 0.1, 0.2]: the 2nd attempt waits >= 0.05 s, the 3rd >= 0.1 s
    assert t[1] - t[0] >= 0.05 and t[2] - t[1] >= 0.1


async def test_fallback_after_the_last_failure(api: Api, fake_ai) -> None:  # type: ignore[no-untyped-def]
    fake_ai.script.extend([500, 500, 503, 500])  # 1 attempt + 3 retries, all fail
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is True and c["ai_response"] in FALLBACKS["tr"]
    assert fake_ai.calls["chat"] == 4
    stats = await (await api.c.get("/api/v1/stats")).json()
    assert stats["confessions"]["published"] == 1


async def test_a_hanging_ai_times_out_and_is_retried(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, ai={"request_timeout": 0.3})))
    fake_ai.script.append("hang")
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is False and fake_ai.calls["chat"] == 2


async def test_job_timeout_bounds_an_attempt(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    cfg = test_config(tmp_path, fake_ai.url, queue={"job_timeout": 0.2, "retries": 1}, ai={"request_timeout": 5.0})
    api = Api(await make_client(cfg))
    fake_ai.latency = 0.5  # every call outlives the job timeout
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is True  # give_up published with a fallback after 2 timed-out attempts


async def test_no_api_key_means_fallback_at_once(tmp_path, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, None, ai={"fallback_replies": ["Sabır, her şey geçer."]})))
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token, timeout=1.0)
    assert c["ai_response"] == "Sabır, her şey geçer." and c["ai_fallback"] is True


async def test_moderation_rejects_and_only_the_author_sees_why(api: Api, fake_ai) -> None:  # type: ignore[no-untyped-def]
    author, reader = await api.register(), await api.register()
    cid = (await (await api.post(author, content="Bu nefret dolu bir metin [flag:hate]")).json())["confession"]["id"]
    c = await api.wait_status(cid, author, status="rejected")
    assert c["rejection_reason"] == "moderation: hate" and c["ai_response"] is None
    assert fake_ai.calls["chat"] == 0  # no reply is written for a rejected confession
    assert await api.confession(cid, reader) == {"http_status": 404}
    assert (await (await api.c.get("/api/v1/confessions")).json())["items"] == []
    mine = await (await api.c.get("/api/v1/me/confessions", headers=api.auth(author))).json()
    assert mine["items"][0]["status"] == "rejected"
    stats = await (await api.c.get("/api/v1/stats")).json()
    assert stats["confessions"]["rejected"] == 1


async def test_self_harm_is_published_with_the_crisis_message(api: Api) -> None:
    token = await api.register()
    text = "Artık dayanamıyorum, kendime zarar vermek istiyorum [flag:self-harm] [flag:violence]"
    cid = (await (await api.post(token, content=text)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_response"].startswith("Seni duyuyoruz")
    assert c["ai_response"].endswith("\n\n" + api.c.app[WALL].config.ai.crisis_message.tr)


async def test_crisis_message_kept_when_the_reply_falls_back(api: Api, fake_ai) -> None:  # type: ignore[no-untyped-def]
    fake_ai.script.extend([500] * 4)
    token = await api.register()
    cid = (await (await api.post(token, content="Kendimi çok kötü hissediyorum [flag:self-harm]")).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is True and "112" in c["ai_response"]


async def test_reply_is_cut_to_max_reply_chars(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, ai={"max_reply_chars": 30})))
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert len(c["ai_response"]) <= 30 and c["ai_response"].endswith("…")


async def test_a_job_running_twice_changes_nothing(api: Api, client) -> None:  # type: ignore[no-untyped-def]
    from cwalld.http.keys import WALL

    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    first = await api.wait_status(cid, token)
    wall = client.app[WALL]
    await asyncio.gather(wall.replies.run(cid), wall.replies.give_up(cid))
    assert await api.confession(cid, token) == first
