"""Which language a confession is written in: Turkish, English, or unsure (None).

Why local and this small: the wall speaks two languages, and the answer picks the reply language
asked of the model, the fallback set and the help line — also when there is no AI. Turkish letters
and the commonest short words of each language decide; a tie is "unsure", and the caller falls
back to ``[ai].language``.
"""

from __future__ import annotations

import re

_TR_LETTERS = re.compile(r"[çğıöşüÇĞİÖŞÜ]")
_WORD = re.compile(r"[^\W\d_]+")
_TR = frozenset(
    "ve bir bu şu o ben sen biz ama çok için de da ki ne mi mı mu mü gibi kadar daha en hiç her şey "
    "var yok değil ile diye çünkü sonra önce artık bugün yine bile beni bana benim seni sana onu ona "
    "kimse hep nasıl neden niye olarak oldu olan gerçekten hala hâlâ şimdi".split())
_EN = frozenset(
    "the and a an i to of my is it in that me was for but not with have you this so am be just like "
    "about what don't dont never feel i'm im can do did no all at on they he she we our your anymore "
    "myself been when because really know want still".split())


def detect(text: str) -> str | None:
    """"tr", "en", or None when the text does not tell."""
    words = _WORD.findall(text.replace("İ", "i").replace("I", "ı").lower())
    tr = sum(w in _TR for w in words) + len(_TR_LETTERS.findall(text))
    en = sum(w in _EN or w.replace("ı", "i") in _EN for w in words)
    if tr > en:
        return "tr"
    if en > tr:
        return "en"
    return None


def of(text: str, default: str) -> str:
    """The language to answer ``text`` in: detected, else ``default`` (``[ai].language``)."""
    return detect(text) or default
