"""The AI client behaves like a good API citizen (issue 12 §3): Retry-After is honoured, permanent
errors are not retried, a missing moderations endpoint is said once and not hammered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog

from cwalld.ai import AI, AIError, Verdict
from cwalld.config import AI as AISettings
from tests.conftest import Api, free_port, test_config


async def post(api: Api, token: str, text: str) -> int:
    return int((await (await api.post(token, content=text)).json())["confession"]["id"])


async def test_retry_after_is_honoured_and_capped(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """A 429 with Retry-After: 20 was called again at +1, +2, +4 s: the next attempt now waits
    what the server asked (capped by [ai].max_retry_after), the backoff schedule being the floor."""
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, ai={"max_retry_after": 1.5})))
    token = await api.register()
    fake_ai.script.extend([(429, {"Retry-After": "1"}), (503, {"Retry-After": "20"})])
    cid = await post(api, token, "Sabırla bekleyen bir itiraf metni.")
    c = await api.wait_status(cid, token, timeout=10)
    gaps = [b - a for a, b in zip(fake_ai.call_times, fake_ai.call_times[1:])]
    assert c["ai_fallback"] is False and len(fake_ai.call_times) == 3
    assert 0.95 <= gaps[0] < 1.4, gaps  # Retry-After: 1 (not the 0.05 s backoff)
    assert 1.45 <= gaps[1] < 2.0, gaps  # Retry-After: 20, capped at 1.5


async def test_permanent_errors_are_not_retried(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url)))
    token = await api.register()
    fake_ai.script.append(400)
    cid = await post(api, token, "Geçersiz istek üreten bir itiraf.")
    c = await api.wait_status(cid, token)
    assert c["ai_fallback"] is True and fake_ai.calls["chat"] == 1  # fallback at once, no retry


async def test_a_wrong_key_is_said_once_per_episode(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url)))
    token = await api.register()
    fake_ai.moderation_script.extend([401] * 6)  # a wrong key: the first call of each job fails
    with structlog.testing.capture_logs() as logs:
        ids = [await post(api, token, f"Anahtarı yanlış olan itiraf {i}.") for i in range(3)]
        for cid in ids:
            assert (await api.wait_status(cid, token))["ai_fallback"] is True
    assert [e["event"] for e in logs].count("ai_auth_failed") == 1
    # each job: one try, then give_up's; no retries (a request may carry several jobs' texts)
    assert sorted(t for inputs in fake_ai.moderated for t in inputs) == sorted(
        [f"Anahtarı yanlış olan itiraf {i}." for i in range(3)] * 2)


async def test_a_server_without_moderations_is_said_once_and_not_retried(tmp_path: Path, fake_ai: Any,
                                                                        make_client: Any) -> None:
    """Ollama or llama.cpp have no /v1/moderations: every confession was retried four times on a
    permanent 404, then published unmoderated."""
    api = Api(await make_client(test_config(tmp_path, fake_ai.url)))
    token = await api.register()
    fake_ai.moderation_script.extend([404] * 10)
    with structlog.testing.capture_logs() as logs:
        ids = [await post(api, token, f"Yerel modelle cevaplanan itiraf {i}.") for i in range(3)]
        for cid in ids:
            assert (await api.wait_status(cid, token))["ai_fallback"] is False  # the model still replies
    warnings = [e for e in logs if e["event"] == "ai_moderation_unavailable"]
    assert len(warnings) == 1 and "moderations" in warnings[0]["url"] and warnings[0]["key"] == "ai.moderation"
    assert fake_ai.calls["chat"] == 3


async def test_an_unknown_model_is_said_once(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url)))
    token = await api.register()
    fake_ai.script.extend([404] * 2)
    with structlog.testing.capture_logs() as logs:
        ids = [await post(api, token, f"Modeli bulunmayan itiraf {i}.") for i in range(2)]
        for cid in ids:
            assert (await api.wait_status(cid, token))["ai_fallback"] is True
    found = [e for e in logs if e["event"] == "ai_model_not_found"]
    assert len(found) == 1 and found[0]["model"] == "gpt-4o-mini"
    assert fake_ai.calls["chat"] == 2


@pytest.mark.parametrize(("step", "kind", "permanent", "wait"), [
    ((429, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}), "rate_limited", False, 60.0),  # a date, capped
    ((503, {"retry-after-ms": "1500"}), "server", False, 1.5), (500, "server", False, None),
    (400, "invalid_request", True, None), (422, "invalid_request", True, None), (401, "auth", True, None),
    (403, "auth", True, None), (404, "not_found", True, None), (409, "other", False, None),
    ("hang", "timeout", False, None)])
async def test_every_failure_has_its_kind(fake_ai: Any, step: Any, kind: str, permanent: bool,
                                          wait: float | None) -> None:
    """The adapter speaks HTTP itself (no openai package): each way a call fails is an AIError the
    queue knows what to do with, on both endpoints."""
    ai = AI(AISettings(api_key="k", base_url=fake_ai.url + "/", request_timeout=0.3))  # a trailing / is fine
    try:
        for script, call in ((fake_ai.script, ai.reply("Bir itiraf.", "tr")), (fake_ai.moderation_script,
                                                                              ai.moderate("Bir itiraf."))):
            script.append(step)
            with pytest.raises(AIError) as e:
                await call
            assert (e.value.kind, e.value.permanent, e.value.retry_after) == (kind, permanent, wait)
        assert (await ai.reply("Bir itiraf.", "en")).startswith("Seni duyuyoruz")  # the same session goes on
    finally:
        await ai.close()


async def test_an_unreachable_server_is_a_connection_failure() -> None:
    ai = AI(AISettings(api_key="k", base_url=f"http://127.0.0.1:{free_port()}/v1", request_timeout=1))
    try:
        with pytest.raises(AIError) as e:
            await ai.moderate("Bir itiraf.")
        assert e.value.kind == "connection" and not e.value.permanent
    finally:
        await ai.close()


async def test_texts_moderated_together_go_in_one_request_each_with_its_own_verdict(fake_ai: Any) -> None:
    """Jobs that read their confessions together ask for moderation together: one request with a
    list (issue 13: a third of the AI requests gone at five consumers), each its own answer."""
    ai = AI(AISettings(api_key="k", base_url=fake_ai.url, request_timeout=2))
    try:
        texts = ["Sıradan bir itiraf.", "Nefret dolu [flag:hate] bir itiraf.", "Artık [flag:self-harm] dayanamıyorum."]
        verdicts = await asyncio.gather(*(ai.moderate(t) for t in texts))
        assert fake_ai.moderated == [texts]
        assert verdicts == [Verdict(), Verdict(rejected="moderation: hate"), Verdict(crisis=True)]
        assert await ai.moderate("Tek başına bir itiraf.") == Verdict()  # one alone: a request of its own
        assert fake_ai.moderated[-1] == ["Tek başına bir itiraf."]
    finally:
        await ai.close()


async def test_a_failed_moderation_request_fails_only_its_own_texts_each_with_its_own_error(fake_ai: Any) -> None:
    ai = AI(AISettings(api_key="k", base_url=fake_ai.url, request_timeout=2))
    try:
        fake_ai.moderation_script.append((429, {"Retry-After": "3"}))
        failed = await asyncio.gather(*(ai.moderate(f"Bekleyen itiraf {i}.") for i in range(3)), return_exceptions=True)
        assert all(isinstance(e, AIError) and e.kind == "rate_limited" and e.retry_after == 3.0 for e in failed), failed
        assert len({id(e) for e in failed}) == 3  # each job raises its own exception object
        assert await ai.moderate("Sonraki itiraf.") == Verdict()  # the next request is not held by it
        fake_ai.moderation_script.append((200, {}))  # an answer without results is no verdict
        with pytest.raises(AIError, match="unexpected moderation answer"):
            await ai.moderate("Garip cevap alan itiraf.")
    finally:
        await ai.close()
