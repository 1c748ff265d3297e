"""The read side: confessions, users and lists as JSON bytes, cached where they are shared.

Commands go through ``service.Wall``; reads that dominate a wall (feeds, popular, stats, own
list) come from here as ready-to-send bytes. A cached entry holds the view that every reader
shares — never ``empathized``, which is overlaid per caller, and never an anonymous author.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from cwalld.cache import Cache
from cwalld.config import Cache as CacheSettings
from cwalld.domain import Confession, User
from cwalld.service import Page, Wall


def confession_json(c: Confession, empathized: bool, viewer: User | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "content": c.content,
        "category": c.category,
        "status": c.status,
        "ai_response": c.ai_response,
        "ai_fallback": c.ai_fallback,
        "empathy_count": c.empathy_count,
        "is_popular": c.is_popular,
        "created_at": c.created_at,
        "published_at": c.published_at,
        # Storage fills ``author`` only for named confessions, the service for the author's own view.
        "author": {"username": c.author.username, "name": c.author.name, "image": c.author.image} if c.author else None,
        "empathized": empathized,
    }
    if viewer is not None and viewer.id == c.author_id:
        out["rejection_reason"] = c.rejection_reason
    return out


def user_json(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "image": u.image,
        "is_admin": u.is_admin,
        "badges": [{"code": b.code, "name": b.name, "awarded_at": b.awarded_at} for b in u.badges],
        "created_at": u.created_at,
    }


@dataclass(frozen=True, slots=True)
class Body:
    """Bytes to send and their ETag."""

    data: bytes
    etag: str


def _etag(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=10).hexdigest() + '"'


def _pack(ids: list[int], data: bytes) -> bytes:
    """A cache entry: the ETag, the ids on the page (for the per-caller overlay), the body."""
    return _etag(data).encode() + b"\n" + b",".join(str(i).encode() for i in ids) + b"\n" + data


def _unpack(entry: bytes) -> tuple[str, bytes, bytes]:
    """(ETag, the ids line, body); ids are parsed only when a caller needs its overlay."""
    etag, ids, data = entry.split(b"\n", 2)
    return etag.decode(), ids, data


class Views:
    def __init__(self, wall: Wall, cache: Cache, settings: CacheSettings) -> None:
        self.wall, self.cache, self.ttl = wall, cache, settings

    async def feed(self, viewer: User | None, category: str | None, limit: int, cursor: str | None) -> Body:
        async def fill() -> bytes:
            page = await self.wall.feed(category, limit, cursor)
            return self._shared(page, with_cursor=True)

        entry = await self.cache.page("feed", [f"feed:{category or 'all'}"], f"feed:{category or ''}:{limit}:{cursor or ''}",
                                      self.ttl.feed_ttl, fill)
        return await self._overlay(entry, viewer)

    async def popular(self, viewer: User | None, limit: int) -> Body:
        async def fill() -> bytes:
            return self._shared(await self.wall.popular(limit), with_cursor=False)

        entry = await self.cache.page("popular", ["popular"], f"popular:{limit}", self.ttl.popular_ttl, fill)
        return await self._overlay(entry, viewer)

    async def stats(self) -> Body:
        async def fill() -> bytes:
            data = orjson.dumps(await self.wall.stats())
            return _pack([], data)

        etag, _, data = _unpack(await self.cache.page("stats", ["stats"], "stats", self.ttl.stats_ttl, fill))
        return Body(data, etag)

    async def mine(self, user: User, limit: int, cursor: str | None) -> Body:
        """The author's own list. Its cache key is a keyed hash, never the user id, and the entry
        holds no anonymous author: who wrote what is not readable from the cache."""
        who = self.wall.owner_key(user.id)

        async def fill() -> bytes:
            page = await self.wall.mine(user, limit, cursor)
            return _pack([c.id for c in page.items], orjson.dumps(
                {"items": [confession_json(c, c.id in page.empathized, user) for c in page.items],
                 "next_cursor": page.next_cursor}))

        entry = await self.cache.page("user_confessions", [f"mine:{who}"], f"mine:{who}:{limit}:{cursor or ''}",
                                      self.ttl.user_confessions_ttl, fill)
        _, _, data = _unpack(entry)
        body = orjson.loads(data)
        me = {"username": user.username, "name": user.name, "image": user.image}
        for item in body["items"]:
            item["author"] = me
        data = orjson.dumps(body)
        return Body(data, _etag(data))

    @staticmethod
    def _shared(page: Page, with_cursor: bool) -> bytes:
        body: dict[str, Any] = {"items": [confession_json(c, False, None) for c in page.items]}
        if with_cursor:
            body["next_cursor"] = page.next_cursor
        return _pack([c.id for c in page.items], orjson.dumps(body))

    async def _overlay(self, entry: bytes, viewer: User | None) -> Body:
        """The shared page, with the caller's own empathies marked (parsed only if there are any)."""
        etag, ids, data = _unpack(entry)
        if viewer is None or not ids:
            return Body(data, etag)
        marked = await self.wall.storage.empathized(viewer.id, [int(i) for i in ids.split(b",")])
        if not marked:
            return Body(data, etag)
        body = orjson.loads(data)
        for item in body["items"]:
            item["empathized"] = item["id"] in marked
        data = orjson.dumps(body)
        return Body(data, _etag(data))
