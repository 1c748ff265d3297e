"""The event log in Redis: one stream shared by every process on the same Redis and prefix.

XADD runs in a script that trims entries older than the replay window by the server's clock
(never a process's), so every process sees one window. Stream ids are the server's too: they
order entries from all processes, and a reconnecting client's ``Last-Event-ID`` means the same
place whichever process it reaches next. Each process reads new entries with one blocking XREAD
on a connection of its own (a blocked command must not hold up the shared, coalesced one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from cwalld.live import Entry, order
from cwalld.redis_client import Coalesced

log = structlog.get_logger("cwalld.live")

APPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('XADD', KEYS[1], 'MINID', '~', now - tonumber(ARGV[1]), '*', 'k', ARGV[2], 'c', ARGV[3])
"""
SINCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) < now - tonumber(ARGV[3]) then return false end
return redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
"""


def _entries(rows: Any) -> list[Entry]:
    """XRANGE / XREAD rows (``[id, [field, value, …]]``) as entries."""
    out = []
    for entry_id, fields in rows:
        values = dict(zip(fields[::2], fields[1::2]))
        out.append(Entry(entry_id.decode(), values[b"k"].decode(), int(values[b"c"])))
    return out


BLOCK_MS = 15_000  # one XREAD waits this long for new entries, then asks again


class RedisLog:
    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.key = url, f"{prefix}events"
        self.r = Coalesced(url)
        self._append = self.r.script(APPEND)
        self._since = self.r.script(SINCE)

    async def append(self, kind: str, confession_id: int, window: float) -> None:
        await self._append([self.key], [int(window * 1000), kind, confession_id])

    async def head(self) -> str:
        rows = await self.r.call("XREVRANGE", self.key, "+", "-", "COUNT", 1)
        return rows[0][0].decode() if rows else "0-0"

    async def since(self, last_id: str, window: float) -> list[Entry] | None:
        rows = await self._since([self.key], [last_id, order(last_id)[0], int(window * 1000)])
        return None if rows is None else _entries(rows)

    async def follow(self, deliver: Callable[[Entry], None]) -> None:
        """Deliver every new entry, from any process; when Redis is away, try again each second."""
        reader = Coalesced(self.url, timeout=BLOCK_MS / 1000 + 5)
        last = "$"
        try:
            while True:
                try:
                    got: Any = await reader.call("XREAD", "BLOCK", BLOCK_MS, "STREAMS", self.key, last)
                except Exception as e:  # noqa: BLE001 - Redis away: live updates pause, the wall goes on
                    log.warning("live_follow_failed", error=str(e))
                    await asyncio.sleep(1)
                    continue
                for _, rows in got or []:  # [[stream, rows]]
                    for entry in _entries(rows):
                        last = entry.id
                        deliver(entry)
        finally:
            await reader.aclose(wait=0)

    async def close(self) -> None:
        await self.r.aclose()
