"""The in-process cache: an LRU of bytes with TTLs, bounded by ``max_entries`` and ``max_bytes``
(entries differ in size by orders of magnitude: a count alone does not bound memory).

Generation counters live apart from the LRU: evicting one would reset it and could bring an old
entry back to life.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class LocalCache:
    remote = False

    def __init__(self, max_entries: int = 10000, max_bytes: int = 64 * 2**20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.bytes = 0  # held by entries' values and keys
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._gens: dict[str, int] = {}
        self._windows: dict[str, tuple[float, int]] = {}

    async def lookup(self, gens: list[str], base: str) -> tuple[str, bytes | None]:
        key = ".".join(str(self._gens.get(g, 0)) for g in gens) + ":" + base
        return key, await self.get(key)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def store(self, key: str, value: bytes, ttl: float) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + ttl, value)
        self.bytes += len(key) + len(value)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= len(key) + len(value)

    async def purge_pages(self) -> None:
        for key in [k for k in self._entries if k[:1].isdigit()]:
            self._drop(key)

    async def bump(self, gens: list[str]) -> None:
        for g in gens:
            self._gens[g] = self._gens.get(g, 0) + 1

    async def hit(self, key: str, ttl: float) -> int:
        now = time.monotonic()
        until, count = self._windows.get(key, (0.0, 0))
        if until <= now:
            until, count = now + ttl, 0
            if len(self._windows) > self.max_entries:  # bounded: drop closed windows
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        self._windows[key] = (until, count + 1)
        return count + 1

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0
