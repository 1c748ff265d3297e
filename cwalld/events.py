"""Domain events: what the use cases say happened, for whoever must follow (the cache now; live
updates to browsers later).

Why events rather than each use case bumping caches: "never stale after a change" then depends
on one table (``views.INVALIDATES``) that a test walks event by event, not on every use case
remembering every view that shows what it changed. An event never names a user: an anonymous
confession's author must not be derivable from anything that follows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "confession_created", "confession_published", "confession_rejected", "confession_hidden",
    "confession_restored", "confession_deleted", "empathy_added", "empathy_removed", "reported",
    "marked_popular", "user_registered", "badge_awarded", "admin_granted", "admin_revoked",
    "reply_regenerated", "account_deleted", "confession_detached",
]
KINDS: tuple[Kind, ...] = Kind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Event:
    kind: Kind
    confession_id: int | None = None
    category: str | None = None  # the confession's, where there is one


Listener = Callable[[Event], Awaitable[None]]


class Events:
    """The in-process bus: ``emit`` awaits every listener in order, so when a use case returns,
    everything that follows its change (the cache bumps) is done: read-your-writes."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def emit(self, event: Event) -> None:
        for listener in self._listeners:
            await listener(event)
