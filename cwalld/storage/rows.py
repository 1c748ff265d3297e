"""What both SQL adapters read alike: the confession and user columns, and the objects made of
their rows. The schema is the same column for column in SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from cwalld.domain import Author, Badge, Confession, User

CONFESSION = (
    "c.id, c.content, c.category, c.status, c.ai_response, c.ai_fallback, c.empathy_count, c.is_popular,"
    " c.created_at, c.published_at, c.anonymous, c.author_id, c.rejection_reason,"
    " u.username, u.name, u.image"
)
# The join only matches for named confessions, so an anonymous author is never even read.
FROM = "FROM confessions c LEFT JOIN users u ON u.id = c.author_id AND c.anonymous = 0"
USER = "u.id, u.username, u.name, u.image, u.is_admin, u.created_at"


def confession(r: Any) -> Confession:
    return Confession(
        id=r[0], content=r[1], category=r[2], status=r[3], ai_response=r[4], ai_fallback=bool(r[5]),
        empathy_count=r[6], is_popular=bool(r[7]), created_at=r[8], published_at=r[9],
        anonymous=bool(r[10]), author_id=r[11], rejection_reason=r[12],
        author=Author(r[13], r[14], r[15]) if r[13] is not None else None,
    )


def user(r: Any, badges: list[Badge] | None = None) -> User:
    return User(id=r[0], username=r[1], name=r[2], image=r[3], is_admin=bool(r[4]), created_at=r[5], badges=badges or [])
