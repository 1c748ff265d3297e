"""The Redis cache: shared by every cwalld process on the same Redis (and ``[redis].prefix``).

A lookup is one round trip: a Lua script reads the generation counters, builds the key and GETs
it. Entries expire by TTL; generations are plain counters (INCR) that never expire. Each call
but ``purge_pages`` is bounded by ``bound()`` seconds (``cache.remote_bound``).
"""

from __future__ import annotations

from collections.abc import Callable

from cwalld.cache import remote_bound
from cwalld.redis_client import Coalesced

LOOKUP = """
local parts = {}
for i, g in ipairs(redis.call('MGET', unpack(KEYS))) do parts[i] = g or '0' end
local key = table.concat(parts, '.') .. ':' .. ARGV[2]
return {key, redis.call('GET', ARGV[1] .. key)}
"""
BUMP = "for _, k in ipairs(KEYS) do redis.call('INCR', k) end"
HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class RedisCache:
    remote = True

    def __init__(self, url: str, prefix: str = "cwall:",
                 bound: Callable[[], float] = remote_bound(lambda: 0.0)) -> None:
        # Each call is bounded by bound() (Cache's SLOW and our loop's lag); the socket timeout
        # only frees a connection from a Redis that stopped answering.
        self.r = Coalesced(url, timeout=1.0, connect_timeout=0.2)
        self.bound = bound
        self.entry, self.gen = f"{prefix}c:", f"{prefix}g:"
        self._lookup = self.r.script(LOOKUP)
        self._hit = self.r.script(HIT)
        self._bump = self.r.script(BUMP)

    async def lookup(self, gens: list[str], base: str) -> tuple[str, bytes | None]:
        key, value = await self._lookup([self.gen + g for g in gens], [self.entry, base], within=self.bound())
        return key.decode(), value or None

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.r.within(self.bound(), "GET", self.entry + key)
        return value

    async def store(self, key: str, value: bytes, ttl: float) -> None:
        await self.r.within(self.bound(), "SET", self.entry + key, value, "PX", max(1, int(ttl * 1000)))

    async def bump(self, gens: list[str]) -> None:
        # One script, not a pipeline of INCRs: a third less client CPU, and atomic.
        await self._bump([self.gen + g for g in gens], within=self.bound())

    async def hit(self, key: str, ttl: float) -> int:
        return int(await self._hit([self.entry + key], [int(ttl * 1000)], within=self.bound()))

    async def purge_pages(self) -> None:
        cursor = b"0"
        while True:
            cursor, pages = await self.r.call("SCAN", cursor, "MATCH", self.entry + "[0-9]*", "COUNT", 1000)
            if pages:
                await self.r.call("UNLINK", *pages)
            if cursor == b"0":
                break

    async def close(self) -> None:
        await self.r.aclose()
