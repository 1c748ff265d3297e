"""Local safety checks that never depend on the AI: crisis phrases and blocked terms.

Why local: crisis help must reach a person who writes about hurting themselves when there is no
API key, during an AI outage, and when the moderation model misses it. The shipped phrase lists
(``terms/crisis_*.txt``, Turkish and English) plus ``[safety].crisis_terms`` are matched after
folding both sides alike: case with Turkish rules (İ/i, I/ı), diacritics dropped, repeated letters
counted once, punctuation as spaces. A phrase must start at a word boundary; its last word may
go on, as Turkish suffixes do. ``[safety].blocked_terms`` are matched the same way.
"""

from __future__ import annotations

import re
import unicodedata
from importlib import resources

from cwalld.config import Safety as SafetySettings

_WORD = re.compile(r"\w+")
_REPEAT = re.compile(r"(\w)\1+")


def fold(text: str) -> str:
    """Lower-case (Turkish rules), no diacritics, repeated letters once, words joined by spaces."""
    text = text.replace("İ", "i").replace("I", "ı").lower().replace("ı", "i")
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(_REPEAT.sub(r"\1", text)))


def shipped_terms() -> list[str]:
    terms: list[str] = []
    for name in ("crisis_tr.txt", "crisis_en.txt"):
        text = resources.files("cwalld").joinpath("terms", name).read_text(encoding="utf-8")
        terms += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return terms


def _matcher(terms: list[str]) -> re.Pattern[str] | None:
    folded = sorted({fold(t) for t in terms if fold(t)}, key=len, reverse=True)
    if not folded:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in folded) + ")")


class Safety:
    def __init__(self, settings: SafetySettings) -> None:
        self.settings = settings
        self._crisis = _matcher(shipped_terms() + list(settings.crisis_terms))
        self._blocked = _matcher(list(settings.blocked_terms))

    def crisis(self, text: str) -> bool:
        """Does ``text`` speak of suicide or self-harm intent (shipped or configured phrases)?"""
        return self._crisis is not None and self._crisis.search(fold(text)) is not None

    def blocked(self, text: str) -> bool:
        return self._blocked is not None and self._blocked.search(fold(text)) is not None
