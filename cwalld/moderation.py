"""Moderation by people: what admins look at (pending, rejected, hidden, reported) and their decisions.

Reports by users live with confessions (``confessions.report``); the AI's moderation with the
AI job (``replies``). An admin's decision on a pending confession (one held while moderation was
unavailable, or any still waiting) takes effect at once; its job then finds nothing to do.
"""

from __future__ import annotations

import structlog

from cwalld.config import Config
from cwalld.confessions import Cursors, Page, paged
from cwalld.domain import HIDDEN, PENDING, PUBLISHED, REJECTED, Confession, Invalid, NotFound
from cwalld.events import Event, Events
from cwalld.replies import Replies
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.moderation")

REPORTED = "reported"  # not a status of its own: published, with at least one report


class Moderation:
    def __init__(self, config: Config, storage: Storage, events: Events, cursors: Cursors, replies: Replies) -> None:
        self.config, self.storage, self.events, self.cursors = config, storage, events, cursors
        self.replies = replies

    async def by_status(self, status: str | None, limit: int, cursor: str | None) -> Page:
        if status not in (PENDING, REJECTED, HIDDEN, REPORTED):
            raise Invalid({"status": "one of pending, rejected, hidden, reported"})
        items = await self.storage.by_status(status, limit + 1, self.cursors.decode(cursor))
        return paged(items, limit, lambda c: (c.created_at, c.id), self.cursors)

    async def report_counts(self, page: Page) -> dict[int, int]:
        """How many users reported each confession of ``page`` (who did is never shown)."""
        return await self.storage.report_counts([c.id for c in page.items])

    async def hide(self, confession_id: int, by: str = "admin") -> Confession:
        """Take a published confession off every feed until an admin restores it."""
        c = await self.storage.set_status(confession_id, (PUBLISHED,), HIDDEN)
        if c is None:
            raise NotFound("no published confession with that id")
        log.info("confession_hidden", confession_id=confession_id, by=by)
        await self.events.emit(Event("confession_hidden", c.id, c.category))
        return c

    async def restore(self, confession_id: int) -> Confession:
        """Publish a hidden (or rejected) confession again; one never answered gets a fallback."""
        found = await self.storage.confession(confession_id)
        reply = self.replies.fallback(found) if found is not None else None
        c = await self.storage.set_status(confession_id, (HIDDEN, REJECTED), PUBLISHED, fallback_reply=reply)
        if c is None:
            raise NotFound("no hidden or rejected confession with that id")
        log.info("confession_restored", confession_id=confession_id, by="admin")
        await self.events.emit(Event("confession_restored", c.id, c.category))
        return c

    async def publish(self, confession_id: int) -> Confession:
        """Publish a pending confession now, with the fallback reply (and the help line where the
        text needs it); ``cwalld ai regenerate`` can replace the reply later."""
        c = await self.storage.confession(confession_id)
        if c is None or c.status != PENDING or not await self.storage.finish(
                c.id, PUBLISHED, self.replies.fallback(c), True, None):
            raise NotFound("no pending confession with that id")
        log.info("confession_published", confession_id=c.id, ai_fallback=True, by="admin")
        await self.events.emit(Event("confession_published", c.id, c.category))
        return await self._get(c.id)

    async def reject(self, confession_id: int) -> Confession:
        """Reject a pending confession now (reason ``admin``: only its author sees it)."""
        c = await self.storage.confession(confession_id)
        if c is None or c.status != PENDING or not await self.storage.finish(c.id, REJECTED, None, False, "admin"):
            raise NotFound("no pending confession with that id")
        log.info("confession_rejected", confession_id=c.id, by="admin")
        await self.events.emit(Event("confession_rejected", c.id, c.category))
        return await self._get(c.id)

    async def _get(self, confession_id: int) -> Confession:
        c = await self.storage.confession(confession_id)
        if c is None:  # deleted by its author in between
            raise NotFound("no confession with that id")
        return c
