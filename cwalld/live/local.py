"""The event log of one process (no Redis): a deque over the replay window.

It begins with the process: an id from before then (a client of the previous run) may have
missed entries that are gone, so it gets ``reset``, never a silent gap."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from cwalld.live import Entry, order


class LocalLog:
    """The log of one process (no Redis): entries are delivered as they are appended."""

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self._begun = (int(time.time() * 1000), 0)
        self._last = self._begun
        self._deliver: Callable[[Entry], None] = lambda entry: None

    async def append(self, kind: str, confession_id: int, window: float) -> None:
        now = int(time.time() * 1000)
        self._last = (now, 0) if now > self._last[0] else (self._last[0], self._last[1] + 1)
        entry = Entry(f"{self._last[0]}-{self._last[1]}", kind, confession_id)
        self.entries.append(entry)
        while self.entries and order(self.entries[0].id)[0] < now - window * 1000:
            self.entries.popleft()
        self._deliver(entry)

    async def head(self) -> str:
        return f"{self._last[0]}-{self._last[1]}"

    async def since(self, last_id: str, window: float) -> list[Entry] | None:
        if order(last_id)[0] < time.time() * 1000 - window * 1000 or order(last_id) < self._begun:
            return None
        return [e for e in self.entries if order(e.id) > order(last_id)]

    async def follow(self, deliver: Callable[[Entry], None]) -> None:
        self._deliver = deliver
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass
