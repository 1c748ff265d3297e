"""The confession wall's nouns and rules. No I/O here: storage, HTTP and the AI live elsewhere."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime

PENDING, PUBLISHED, REJECTED, HIDDEN, DELETED = "pending", "published", "rejected", "hidden", "deleted"
VIRAL_BADGE = ("viral_confession", "Viral İtiraf")


def now() -> str:
    """UTC now as fixed-width RFC 3339, so that text order is time order (indexes, cursors)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_after(seconds: float) -> str:
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds_until(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() - datetime.now(UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Author:
    username: str
    name: str | None
    image: str | None


@dataclass(frozen=True, slots=True)
class Confession:
    id: int
    content: str
    category: str
    status: str
    ai_response: str | None
    ai_fallback: bool
    empathy_count: int
    is_popular: bool
    created_at: str
    published_at: str | None
    anonymous: bool
    author_id: int | None  # None: its account was deleted and it was kept ([privacy].on_account_delete)
    # Filled by storage only where the author may be shown: never for an anonymous confession.
    author: Author | None = None
    rejection_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Badge:
    code: str
    name: str
    awarded_at: str


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    name: str | None
    image: str | None
    is_admin: bool
    created_at: str
    badges: list[Badge] = field(default_factory=list)

    @property
    def as_author(self) -> Author:
        return Author(self.username, self.name, self.image)


# --- errors: each says what went wrong in words a client can show; HTTP maps them to codes ---


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(DomainError):
    code = "validation_error"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class InvalidCursor(Invalid):
    """A cursor this API did not issue (forged, altered, or from another wall)."""

    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__({"cursor": "not a cursor this API returned"})


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    code = "forbidden"


class Unauthorized(DomainError):
    code = "unauthorized"


class UsernameTaken(DomainError):
    code = "username_taken"


class StorageUnavailable(DomainError):
    """The database cannot take this now (disk full, I/O error): try again later."""

    code = "storage_unavailable"
    retry_after = 5


class LastAdmin(DomainError):
    """Revoking these rights would leave the wall with no admin."""

    code = "last_admin"


class TooMany(DomainError):
    """A limit was hit; ``retry_after`` seconds until it frees up."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = max(1, int(retry_after + 0.999))


# --- validation ---

USERNAME = re.compile(r"[a-z0-9_]{3,32}")


def _char_class(codes: list[int]) -> str:
    """A regex character class body for ``codes``, as escapes (ranges merged)."""
    out, i = [], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        a, b = (f"\\U{c:08x}" for c in (codes[i], codes[j]))
        out.append(a if i == j else f"{a}-{b}")
        i = j + 1
    return "".join(out)


_ZW = (0x200C, 0x200D)  # ZWNJ, ZWJ: needed inside words and emoji, invisible alone
# Format characters (Cf) live in planes 0, 1 and 14 only: scanning those, not all 1.1 M code
# points, keeps this at ~15 ms of import time instead of ~90 (every start and CLI call pays it).
_FORMAT = [c for plane in (0x00000, 0x10000, 0xE0000) for c in range(plane, plane + 0x10000)
           if unicodedata.category(chr(c)) == "Cf" and c not in _ZW]
_CONTROLS = [c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + list(range(0x7F, 0xA0)) + [0x2028, 0x2029]
_BAD = _char_class(sorted(_CONTROLS + _FORMAT))  # never in a confession: controls, bidi and other Cf
_EDGE = _char_class(sorted(set(_CONTROLS + _FORMAT + list(_ZW))))
CONTENT_PATTERN = rf"^[^\s{_EDGE}](?:[^{_BAD}]*[^\s{_EDGE}])?$"
"""What a confession may be, said once: published as the schema's pattern, checked here. No
whitespace or invisible character at either end; no control character (tab and newlines aside),
no bidi override or isolate, no other invisible format character (ZWJ/ZWNJ inside the text
aside, for scripts and emoji that need them)."""
_CONTENT = re.compile(CONTENT_PATTERN)
NAME_PATTERN = rf"^[^{_BAD}]*$"  # a display name: no control, bidi or other invisible format character
_NAME = re.compile(NAME_PATTERN)


def check_username(value: object) -> str:
    if not isinstance(value, str) or not USERNAME.fullmatch(value):
        raise Invalid({"username": "3 to 32 characters of a-z, 0-9 and _"})
    return value


def check_name(value: object) -> str | None:
    """A display name, trimmed (None when empty); at most 64 characters, ``NAME_PATTERN``."""
    if not isinstance(value, str) or len(value) > 64 or not _NAME.match(value):
        raise Invalid({"name": "at most 64 characters, no control or invisible format characters"})
    return value.strip() or None


def check_password(value: object) -> str:
    if not isinstance(value, str) or len(value) < 8:
        raise Invalid({"password": "at least 8 characters"})
    if len(value) > 1024:
        raise Invalid({"password": "at most 1024 characters"})
    return value


def clean_content(value: object, min_chars: int, max_chars: int) -> str:
    """Check ``value`` as sent (length, ``CONTENT_PATTERN``), then store it NFC-normalised with
    newlines and tabs made plain. The rules are the published schema's, exactly."""
    if not isinstance(value, str):
        raise Invalid({"content": "must be a string"})
    if not min_chars <= len(value) <= max_chars:
        raise Invalid({"content": f"must be {min_chars} to {max_chars} characters"})
    if not _CONTENT.match(value):
        raise Invalid({"content": "no space or invisible character at either end, and no control, "
                                  "bidi or other invisible format characters"})
    return unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\t", " "))
