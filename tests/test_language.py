"""Replies in the confession's language: the model is asked for it, and the fallback set and the
help line follow it, with or without the AI (issue 12 §7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cwalld import config as configmod
from cwalld.ai import FALLBACKS
from cwalld.config import DEFAULT_CRISIS, DEFAULT_CRISIS_EN, ConfigError
from cwalld.language import detect
from tests.conftest import Api, test_config

TR = "Bugün işte herkesin önünde ağladım ve kimse bir şey demedi."
EN = "I cried at work today in front of everyone and nobody said a thing."


@pytest.mark.parametrize(("text", "lang"), [
    (TR, "tr"), (EN, "en"), ("BEN ÇOK YORULDUM ARTIK", "tr"), ("I NEVER TOLD MY MOTHER THE TRUTH", "en"),
    ("Sinav icin hic calismadim ama gectim, cok sasirdim.", "tr"),  # Turkish typed without its letters
    ("12345 !!!", None), ("Merhaba hello", None)])
def test_detects_turkish_and_english(text: str, lang: str | None) -> None:
    assert detect(text) == lang


async def published(api: Api, content: str) -> dict[str, Any]:
    token = await api.register()
    cid = (await (await api.post(token, content=content)).json())["confession"]["id"]
    return await api.wait_status(cid, token, timeout=10)


async def test_the_model_is_asked_for_the_confessions_language(api: Api, fake_ai: Any) -> None:
    await published(api, EN)
    await published(api, TR)
    await published(api, "12345 67890 !!!")  # unsure: [ai].language (tr)
    assert ["Reply in English" in p for p in fake_ai.prompts] == [True, False, False]
    assert ["Reply in Turkish" in p for p in fake_ai.prompts] == [False, True, True]


@pytest.mark.parametrize(("content", "lang"), [(TR, "tr"), (EN, "en")])
async def test_fallback_in_the_confessions_language_with_the_ai_off(tmp_path: Path, make_client: Any,
                                                                    content: str, lang: str) -> None:
    api = Api(await make_client(test_config(tmp_path)))
    assert (await published(api, content))["ai_response"] in FALLBACKS[lang]


async def test_fallback_in_the_confessions_language_when_the_ai_fails(api: Api, fake_ai: Any) -> None:
    fake_ai.script.extend([500] * 20)
    assert (await published(api, EN))["ai_response"] in FALLBACKS["en"]


async def test_configured_replies_and_help_line_per_language(tmp_path: Path, make_client: Any) -> None:
    cfg = test_config(tmp_path, ai={"fallback_replies": {"en": ["We hear you."]},
                                    "crisis_message": {"en": "Call 988 now."}})
    api = Api(await make_client(cfg))
    assert (await published(api, EN))["ai_response"] == "We hear you."
    assert (await published(api, TR))["ai_response"] in FALLBACKS["tr"]  # tr left empty: built in
    crisis = await published(api, "I want to kill myself, nothing makes sense.")
    assert crisis["ai_response"] == "We hear you.\n\nCall 988 now."
    assert (await published(api, "Kendimi öldürmek istiyorum, hiçbir şeyin anlamı yok."))["ai_response"].endswith(
        DEFAULT_CRISIS)


def test_a_single_value_still_stands_for_every_language() -> None:
    cfg = configmod.build({"ai": {"crisis_message": "Yardım: 182.", "fallback_replies": ["Sabır."]}})
    assert cfg.ai.crisis_message.tr == cfg.ai.crisis_message.en == "Yardım: 182."
    assert cfg.ai.fallback_replies.tr == cfg.ai.fallback_replies.en == ["Sabır."]
    assert configmod.build({}).ai.crisis_message.en == DEFAULT_CRISIS_EN


@pytest.mark.parametrize(("raw", "key"), [
    ({"language": "de"}, "ai.language"), ({"crisis_message": {"en": " "}}, "ai.crisis_message.en"),
    ({"fallback_replies": {"tr": [""]}}, "ai.fallback_replies.tr"), ({"crisis_message": {"de": "x"}}, "ai.crisis_message.de"),
    ({"fallback_replies": {"en": "x"}}, "ai.fallback_replies.en")])
def test_config_errors_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        configmod.build({"ai": raw})
    assert e.value.key == key
