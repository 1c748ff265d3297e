"""Confessions: post one, read the feeds, delete, give empathy, report.

The daily limit is part of the INSERT (exact across processes); a confession is stored pending
and its AI job queued — if queueing fails, the recovery sweep queues it later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from cwalld import domain
from cwalld.config import Config
from cwalld.domain import DELETED, PUBLISHED, Confession, Invalid, InvalidCursor, NotFound, TooMany, User
from cwalld.events import Event, Events
from cwalld.queue import JobQueue
from cwalld.storage import Cursor, Storage

log = structlog.get_logger("cwalld.confessions")

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Confession]
    empathized: set[int]
    next_cursor: str | None


class Confessions:
    def __init__(self, config: Config, storage: Storage, queue: JobQueue, events: Events, cursors: Cursors) -> None:
        self.config, self.storage, self.queue, self.events = config, storage, queue, events
        self.cursors = cursors

    @property
    def categories(self) -> dict[str, str]:
        return {c.slug: c.name for c in self.config.categories}

    async def post(self, user: User, content: object, category: object, anonymous: object = True) -> Confession:
        limits = self.config.limits
        errors: dict[str, str] = {}
        try:
            text = domain.clean_content(content, limits.content_min, limits.content_max)
        except Invalid as e:
            errors.update(e.fields)
        if not isinstance(category, str) or category not in self.categories:
            errors["category"] = "one of " + ", ".join(self.categories)
        if not isinstance(anonymous, bool):
            errors["anonymous"] = "must be true or false"
        if errors:
            raise Invalid(errors)
        assert isinstance(category, str) and isinstance(anonymous, bool)
        since = domain.iso_after(-DAY)
        confession = await self.storage.add_confession(
            user.id, text, category, anonymous, limits.daily_confessions, since)
        if confession is None:
            oldest = await self.storage.oldest_since(user.id, since)
            wait = domain.seconds_until(oldest) + DAY if oldest else DAY
            raise TooMany("daily_limit", f"at most {limits.daily_confessions} confessions a day", wait)
        log.info("confession_created", confession_id=confession.id, category=confession.category)
        await self.events.emit(Event("confession_created", confession.id, confession.category))
        try:
            await self.queue.enqueue(confession.id)
        except Exception as e:  # noqa: BLE001 - committed; the recovery sweep queues it later
            log.warning("enqueue_failed", confession_id=confession.id, error=str(e))
        return with_author(confession, user)

    async def feed(self, category: str | None, limit: int, cursor: str | None) -> Page:
        """A shared page: the caller's own empathies are overlaid by views, not read here."""
        if category is not None and category not in self.categories:
            raise Invalid({"category": "one of " + ", ".join(self.categories)})
        items = await self.storage.feed(category, limit + 1, self.cursors.decode(cursor))
        return await self._page(items, limit, lambda c: (c.published_at or "", c.id))

    async def popular(self, limit: int) -> Page:
        days = self.config.popular.window_days  # 0: all time
        since = domain.iso_after(-days * 86400) if days else ""
        return await self._page(await self.storage.popular(limit, since), limit, None)

    async def mine(self, user: User, limit: int, cursor: str | None) -> Page:
        """The author's own list, anonymous ones included, with their own name on every item."""
        items = await self.storage.by_author(user.id, limit + 1, self.cursors.decode(cursor))
        page = await self._page(items, limit, lambda c: (c.created_at, c.id), user)
        return Page([with_author(c, user) for c in page.items], page.empathized, page.next_cursor)

    async def _page(self, items: list[Confession], limit: int, key: Callable[[Confession], Cursor] | None,
                    viewer: User | None = None) -> Page:
        marks = await self.storage.empathized(viewer.id, [c.id for c in items[:limit]]) if viewer else set()
        return paged(items, limit, key, self.cursors, marks)

    async def get(self, viewer: User | None, confession_id: int) -> tuple[Confession, bool]:
        c = await self.storage.confession(confession_id)
        mine = c is not None and viewer is not None and c.author_id == viewer.id
        if c is None or c.status == DELETED or (c.status != PUBLISHED and not mine):
            raise NotFound("no such confession")  # hidden and rejected ones too, except to the author
        marked = bool(viewer and await self.storage.empathized(viewer.id, [c.id]))
        return (with_author(c, viewer) if mine and viewer else c), marked

    async def delete(self, user: User, confession_id: int) -> None:
        c = await self.storage.confession(confession_id)
        mine = c is not None and c.author_id == user.id
        if c is None or c.status == DELETED or not (c.status == PUBLISHED or mine or user.is_admin):
            raise NotFound("no such confession")
        if not (mine or user.is_admin):
            raise domain.Forbidden("only the author or an admin can delete a confession")
        if await self.storage.delete_confession(confession_id):
            log.info("confession_deleted", confession_id=confession_id)
            await self.events.emit(Event("confession_deleted", c.id, c.category))

    async def empathy(self, user: User, confession_id: int, on: bool) -> int:
        c = await self.storage.set_empathy(user.id, confession_id, on)
        if c is None:
            raise NotFound("no such published confession")
        await self.events.emit(Event("empathy_added" if on else "empathy_removed", c.id, c.category))
        return c.empathy_count

    async def stats(self) -> dict[str, object]:
        return await self.storage.stats()

    async def report(self, user: User, confession_id: int, reason: object = None) -> None:
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise Invalid({"reason": "a string of at most 500 characters"})
        if not await self.storage.add_report(user.id, confession_id, reason.strip() or None if reason else None):
            raise NotFound("no such published confession")
        await self.events.emit(Event("reported", confession_id))
        m = self.config.moderation  # fresh accounts cannot hide a confession by reports
        if await self.storage.hide_if_reported(confession_id, m.auto_hide_reports,
                                               domain.iso_after(-m.report_min_account_age_hours * 3600)):
            c = await self.storage.confession(confession_id)
            log.info("confession_hidden", confession_id=confession_id, by="reports")
            await self.events.emit(Event("confession_hidden", confession_id, c.category if c else None))


def paged(items: list[Confession], limit: int, key: Callable[[Confession], Cursor] | None, cursors: Cursors,
          empathized: set[int] | None = None) -> Page:
    """The first ``limit`` of ``items`` (read one more than asked), and a cursor if there are more."""
    next_cursor = cursors.encode(key(items[limit - 1])) if key and len(items) > limit else None
    return Page(items[:limit], empathized or set(), next_cursor)


def with_author(c: Confession, user: User) -> Confession:
    """The author's own view: their name is shown to them even on an anonymous confession."""
    return replace(c, author=user.as_author)


class Cursors:
    """Opaque, signed page positions: ``base64(position).base64(HMAC)``. A cursor the API did not
    issue is refused before any cache or query sees it — so a client cannot make the server
    compute and cache a new page per forged position."""

    def __init__(self, key: bytes = b"") -> None:
        self.key = key  # set by Wall.open from the database: every process signs and checks alike

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.key, payload, hashlib.sha256).digest()[:16])

    def encode(self, position: Cursor) -> str:
        payload = f"{position[0]}|{position[1]}".encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def decode(self, cursor: str | None) -> Cursor | None:
        if cursor is None:
            return None
        try:
            body, _, mac = cursor.partition(".")
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if not hmac.compare_digest(mac.encode(), self._sign(payload).encode()):
                raise ValueError
            ts, _, ident = payload.decode().partition("|")
            return ts, int(ident)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidCursor() from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
