"""Crisis help never depends on the AI; blocked terms are refused with or without it (issue 12 §1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cwalld.config import DEFAULT_CRISIS, DEFAULT_CRISIS_EN
from cwalld.config import Safety as SafetySettings
from cwalld.safety import Safety
from tests.conftest import Api, test_config

TR = "Her şey anlamsız, kendime zarar vermeyi planlıyorum."
EN = "Nothing makes sense anymore and I want to kill myself."
HELP = {TR: DEFAULT_CRISIS, EN: DEFAULT_CRISIS_EN}  # the help line in the confession's language


@pytest.mark.parametrize("text", [TR, EN, "KENDİMİ ÖLDÜRECEĞİM artık", "kendimi oldurecegimmm bu gece",
                                  "İntihar etmeyi düşünüyorum.", "I keep thinking about ending my life...",
                                  "i want to KIIILL myself"])
def test_crisis_phrases_match_across_case_diacritics_and_repeats(text: str) -> None:
    assert Safety(SafetySettings()).crisis(text)


@pytest.mark.parametrize("text", ["Bugün çok mutluyum, sınavı geçtim.", "I have a skill myself for baking.",
                                  "Ölümsüz aşk romanları okuyorum.", "He killed it on stage, what a show."])
def test_ordinary_confessions_do_not_match(text: str) -> None:
    assert not Safety(SafetySettings()).crisis(text)


def test_configured_terms_extend_the_lists() -> None:
    safety = Safety(SafetySettings(crisis_terms=["karanlık düşünceler"], blocked_terms=["yasak söz"]))
    assert safety.crisis("Bu aralar KARANLIK düşüncelerim var.") and safety.blocked("Bunu yasak sözlerle yazdım.")
    assert not safety.blocked("Sıradan bir itiraf bu.")


async def published(api: Api, content: str) -> dict[str, Any]:
    token = await api.register()
    cid = (await (await api.post(token, content=content)).json())["confession"]["id"]
    return await api.wait_status(cid, token, timeout=10)


@pytest.mark.parametrize("content", [TR, EN])
async def test_help_line_with_the_ai_off(tmp_path: Path, make_client: Any, content: str) -> None:
    api = Api(await make_client(test_config(tmp_path)))  # no API key at all
    c = await published(api, content)
    assert c["ai_fallback"] is True and c["ai_response"].endswith(HELP[content])


@pytest.mark.parametrize("content", [TR, EN])
async def test_help_line_when_the_ai_answers_but_moderation_misses_it(api: Api, content: str) -> None:
    c = await published(api, content)
    assert c["ai_fallback"] is False and c["ai_response"].endswith(HELP[content])


@pytest.mark.parametrize("content", [TR, EN])
async def test_help_line_when_the_ai_is_down(api: Api, fake_ai: Any, content: str) -> None:
    fake_ai.script.extend([500] * 20)
    fake_ai.moderation_script.extend([500] * 20)
    c = await published(api, content)
    assert c["ai_fallback"] is True and c["ai_response"].endswith(HELP[content])
    assert c["ai_response"].count(HELP[content]) == 1


async def test_an_ordinary_confession_gets_no_help_line(api: Api) -> None:
    c = await published(api, "Sınavdan önce hiç çalışmadım ama geçtim.")
    assert DEFAULT_CRISIS not in c["ai_response"]


@pytest.mark.parametrize("ai", [True, False])
async def test_blocked_terms_are_rejected_with_or_without_the_ai(tmp_path: Path, fake_ai: Any, make_client: Any,
                                                                  ai: bool) -> None:
    cfg = test_config(tmp_path, fake_ai.url if ai else None, safety={"blocked_terms": ["yasak söz"]})
    api = Api(await make_client(cfg))
    token = await api.register()
    cid = (await (await api.post(token, content="Bunu YASAK SÖZLERLE yazıyorum.")).json())["confession"]["id"]
    c = await api.wait_status(cid, token, "rejected")
    assert c["rejection_reason"] == "blocked_term"
    assert fake_ai.calls["chat"] == 0
