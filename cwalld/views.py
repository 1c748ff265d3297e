"""The read side: confessions, users and lists as JSON bytes, cached where they are shared.

Commands go through the use cases (``confessions``, ``accounts``, …); reads that dominate a wall
(feeds, popular, stats) come from here as ready-to-send bytes. A cached entry holds the view
that every reader shares — never ``empathized``, which is overlaid per caller, and never an
anonymous author. An author's own list is not cached: it would tie the author to their
anonymous confessions in a shared store (and it is one indexed query).

``INVALIDATES`` is THE table of what each domain event makes stale: the one place to look, and
to change, when a view shows something new.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from cwalld.cache import Cache
from cwalld.config import Cache as CacheSettings
from cwalld.confessions import Confessions, Page
from cwalld.domain import Confession, Invalid, User
from cwalld.events import KINDS, Event, Kind

# What each event makes stale. "feed" is the feed of all categories and the event's own
# category; "feeds" is every feed (a change across categories); "popular" and "stats" are
# themselves. Own lists and /me are not cached, so they are fresh by construction.
INVALIDATES: dict[Kind, tuple[str, ...]] = {
    "confession_created": ("stats",),  # total, pending
    "confession_published": ("feed", "popular", "stats"),
    "confession_rejected": ("stats",),
    "confession_hidden": ("feed", "popular", "stats"),
    "confession_restored": ("feed", "popular", "stats"),
    "confession_deleted": ("feed", "popular", "stats"),
    "empathy_added": ("feed", "popular", "stats"),
    "empathy_removed": ("feed", "popular", "stats"),
    "reported": (),  # report counts are not shown; a hide is its own event
    "marked_popular": ("feeds", "popular", "stats"),  # is_popular in every feed, the list, the count
    "user_registered": ("stats",),  # users
    "badge_awarded": (),  # badges show only on /me
    "admin_granted": (),
    "admin_revoked": (),
    "reply_regenerated": ("feed", "popular"),  # the reply and ai_fallback shown in them
    # its name was in every feed; the cached pages themselves are deleted too (Views.follow)
    "account_deleted": ("feeds", "popular", "stats"),
    "confession_detached": ("feed", "popular"),  # shown now with no author
}
assert set(INVALIDATES) == set(KINDS), "every event says what it makes stale"


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
    def __init__(self, confessions: Confessions, cache: Cache, settings: CacheSettings) -> None:
        self.confessions, self.cache, self.ttl = confessions, cache, settings

    def reconfigure(self, settings: CacheSettings) -> None:
        self.ttl = settings

    def generations(self, event: Event) -> list[str]:
        """The generation counters ``event`` bumps, from ``INVALIDATES``."""
        gens: list[str] = []
        for view in INVALIDATES[event.kind]:
            if view == "feed":
                gens += ["feed:all"] + ([f"feed:{event.category}"] if event.category else [])
            elif view == "feeds":
                gens += self._feeds()
            else:
                gens.append(view)
        return gens

    def _feeds(self) -> list[str]:
        return ["feed:all", *(f"feed:{slug}" for slug in self.confessions.categories)]

    async def follow(self, event: Event) -> None:
        """An ``Events`` listener: bump what the event made stale."""
        if event.kind == "account_deleted":  # no stale copy of the account's pages may linger in the cache
            await self.cache.purge_pages()
        gens = self.generations(event)
        if gens:
            await self.cache.bump(*gens)

    async def clear(self, scope: object) -> str:
        """An operator's cache clear: ``feed``, ``popular``, ``stats`` or ``all``."""
        if scope == "all":
            await self.cache.bump("global")
        elif scope == "feed":
            await self.cache.bump(*self._feeds())
        elif scope == "popular" or scope == "stats":
            await self.cache.bump(scope)
        else:
            raise Invalid({"scope": "one of feed, popular, stats, all"})
        return scope

    async def feed(self, viewer: User | None, category: str | None, limit: int, cursor: str | None) -> Body:
        async def fill() -> bytes:
            page = await self.confessions.feed(category, limit, cursor)
            return self._shared(page, with_cursor=True)

        entry = await self.cache.page("feed", [f"feed:{category or 'all'}"], f"feed:{category or ''}:{limit}:{cursor or ''}",
                                      self.ttl.feed_ttl, fill)
        return await self._overlay(entry, viewer)

    async def popular(self, viewer: User | None, limit: int) -> Body:
        async def fill() -> bytes:
            return self._shared(await self.confessions.popular(limit), with_cursor=False)

        entry = await self.cache.page("popular", ["popular"], f"popular:{limit}", self.ttl.popular_ttl, fill)
        return await self._overlay(entry, viewer)

    async def stats(self) -> Body:
        async def fill() -> bytes:
            data = orjson.dumps(await self.confessions.stats())
            return _pack([], data)

        etag, _, data = _unpack(await self.cache.page("stats", ["stats"], "stats", self.ttl.stats_ttl, fill))
        return Body(data, etag)

    async def mine(self, user: User, limit: int, cursor: str | None) -> Body:
        """The author's own list, their name on every item: never cached (see the module doc)."""
        page = await self.confessions.mine(user, limit, cursor)
        data = orjson.dumps({"items": [confession_json(c, c.id in page.empathized, user) for c in page.items],
                             "next_cursor": page.next_cursor})
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
        marked = await self.confessions.storage.empathized(viewer.id, [int(i) for i in ids.split(b",")])
        if not marked:
            return Body(data, etag)
        body = orjson.loads(data)
        for item in body["items"]:
            item["empathized"] = item["id"] in marked
        data = orjson.dumps(body)
        return Body(data, _etag(data))
