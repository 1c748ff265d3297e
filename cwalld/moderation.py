"""Moderation by people: what admins look at (pending, rejected, hidden) and their decisions.

Reports by users live with confessions (``confessions.report``); the AI's moderation with the
AI job (``replies``).
"""

from __future__ import annotations

import structlog

from cwalld import ai, language
from cwalld.config import Config
from cwalld.confessions import Cursors, Page, paged
from cwalld.domain import HIDDEN, PENDING, PUBLISHED, REJECTED, Confession, Invalid, NotFound
from cwalld.events import Event, Events
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.moderation")


class Moderation:
    def __init__(self, config: Config, storage: Storage, events: Events, cursors: Cursors) -> None:
        self.config, self.storage, self.events, self.cursors = config, storage, events, cursors

    async def by_status(self, status: str | None, limit: int, cursor: str | None) -> Page:
        if status not in (PENDING, REJECTED, HIDDEN):
            raise Invalid({"status": "one of pending, rejected, hidden"})
        items = await self.storage.by_status(status, limit + 1, self.cursors.decode(cursor))
        return paged(items, limit, lambda c: (c.created_at, c.id), self.cursors)

    async def hide(self, confession_id: int) -> Confession:
        """Take a published confession off every feed until an admin restores it."""
        c = await self.storage.set_status(confession_id, (PUBLISHED,), HIDDEN)
        if c is None:
            raise NotFound("no published confession with that id")
        log.info("confession_hidden", confession_id=confession_id, by="admin")
        await self.events.emit(Event("confession_hidden", c.id, c.category))
        return c

    async def restore(self, confession_id: int) -> Confession:
        """Publish a hidden (or rejected) confession again; one never answered gets a fallback."""
        found = await self.storage.confession(confession_id)
        text = found.content if found else ""
        reply = ai.fallback_reply(self.config.ai, confession_id, language.of(text, self.config.ai.language))
        c = await self.storage.set_status(confession_id, (HIDDEN, REJECTED), PUBLISHED, fallback_reply=reply)
        if c is None:
            raise NotFound("no hidden or rejected confession with that id")
        log.info("confession_restored", confession_id=confession_id, by="admin")
        await self.events.emit(Event("confession_restored", c.id, c.category))
        return c
