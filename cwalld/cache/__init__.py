"""The cache: what makes reads cheap, and never a reason for a wrong answer or a 5xx.

Backends (``cache.local`` in-process LRU, ``cache.redis`` shared) store bytes and counters.
``Cache`` on top adds what both need once:

- **Generations.** Entries are keyed with the current value of their generation counters
  (``global`` plus e.g. ``feed:love``); invalidating is one INCR, O(1), and an entry computed
  from old data is stored under the old generation, where nobody looks any more — so the next
  read after a write is fresh (read-your-writes) without KEYS, SCAN or delete races.
- **Fail-open.** A backend error, or ``SLOW_STREAK`` calls in a row slower than ``SLOW``, puts
  the cache aside for ``PAUSE`` seconds (a single slow call is just done without); reads go to
  SQLite. Logged once per outage. If an invalidation failed meanwhile (it may or may not have
  landed), the first call after the outage bumps ``global`` before it reads anything: nothing
  cached before is served again.
- **Single flight.** Concurrent misses of one entry share one fill. The flight is keyed by the
  entry's full key — generations folded in, as read from the backend — so a read that begins
  after a bump anywhere (this process or another) never joins a flight that began before it. The
  fill runs in a task of its own: a reader that goes away cancels only its own wait. With the
  cache off or away there is no flight: every read queries, so nothing can be served stale.
- Hit and miss counts per kind, for metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from cwalld.cache.local import LocalCache

log = structlog.get_logger("cwalld.cache")
T = TypeVar("T")

SLOW = 0.05  # seconds: a cache slower than this costs more than the query it saves
PAUSE = 1.0  # seconds the cache stays aside after a failure
SLOW_STREAK = 3  # slow calls in a row that put it aside
TURNS = 4  # turns of our own loop a round trip needs (send, read, parse, wake the caller): each may be late


def remote_bound(lag: Callable[[], float]) -> Callable[[], float]:
    """Seconds a remote backend's call may take: SLOW, and the answer waits for our loop's turns too."""
    return lambda: SLOW + TURNS * lag()


class CacheBackend(Protocol):
    # Over the network: may be slow or away. A remote backend answers each call (but
    # purge_pages) within ``remote_bound`` or raises TimeoutError: a timer per call of its own
    # rather than asyncio.timeout around it (~1.2 µs against ~4.6 µs per call on uvloop).
    remote: bool
    async def lookup(self, gens: list[str], base: str) -> tuple[str, bytes | None]:
        """Fold the current values of ``gens`` into ``base``; return that key and its value."""

    async def store(self, key: str, value: bytes, ttl: float) -> None: ...
    async def bump(self, gens: list[str]) -> None: ...
    async def purge_pages(self) -> None:
        """Delete every cached page (keys that start with their generations), counters kept."""

    async def get(self, key: str) -> bytes | None: ...
    async def hit(self, key: str, ttl: float) -> int:
        """Atomically count one more hit in a window of ``ttl`` seconds opened by the first."""

    async def close(self) -> None: ...


class Unavailable(Exception):
    """The cache is aside right now; the caller does without it."""


class Cache:
    # The backend is chosen and sized at start; TTLs are the views' and reload.
    RESTART_KEYS = ("cache.enabled", "cache.max_entries", "cache.max_bytes", "redis.url", "redis.password_file", "redis.prefix")

    def __init__(self, backend: CacheBackend | None, enabled: bool = True,
                 lag: Callable[[], float] | None = None) -> None:
        self.backend = backend if enabled else None
        self.lag = lag or (lambda: 0.0)  # how late our own loop runs (cwalld.lag)
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self._inflight: dict[str, asyncio.Task[bytes]] = {}
        self._aside_until = 0.0
        self._down = False
        self._lost = False  # an invalidation failed while the cache was away
        self._slow = 0  # slow calls in a row
        self.slow_calls = 0  # calls done without the cache because the answer was late

    async def _call(self, op: Callable[[CacheBackend], Awaitable[T]]) -> T:
        if self.backend is None or time.monotonic() < self._aside_until:
            raise Unavailable
        backend = self.backend
        try:
            if self._lost:  # catch up before anything is read: nothing cached before may be served
                await backend.bump(["global"])
                self._lost = False
            result = await op(backend)
        except TimeoutError:
            # One slow call may be a passing hiccup: do without the cache for this call; only
            # SLOW_STREAK in a row put it aside — and none counts while our own loop is the slow
            # one (its lag is already added to the bound).
            self.slow_calls += 1
            if self.lag() < SLOW:
                self._slow += 1
            if self._slow >= SLOW_STREAK:
                self._aside("slower than 50 ms")
            raise Unavailable from None
        except Exception as e:  # noqa: BLE001 - any backend trouble: do without the cache
            self._aside(str(e) or type(e).__name__)
            raise Unavailable from None
        self._slow = 0
        if self._down and time.monotonic() >= self._aside_until:  # not a call that began before
            self._down = False
            log.info("cache_available")
        return result

    def _aside(self, why: str) -> None:
        self._aside_until = time.monotonic() + PAUSE
        if not self._down:
            self._down = True
            log.warning("cache_unavailable", error=why)

    async def page(self, kind: str, gens: list[str], base: str, ttl: float,
                   fill: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes for ``base`` under ``gens``, filled on a miss; concurrent misses of
        the same entry (same generations) share one fill."""
        try:
            key, value = await self._call(lambda b: b.lookup(["global", *gens], base))
        except Unavailable:
            self.misses[kind] += 1
            return await fill()
        if value is not None:
            self.hits[kind] += 1
            return value
        flight = self._inflight.get(key)
        if flight is not None:
            self.hits[kind] += 1
        else:
            self.misses[kind] += 1
            flight = asyncio.ensure_future(self._fill(key, ttl, fill))
            self._inflight[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)  # a reader that goes away cancels only its own wait

    def _landed(self, key: str, flight: asyncio.Task[bytes]) -> None:
        del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: its readers got it; with none left, nobody must

    async def _fill(self, key: str, ttl: float, fill: Callable[[], Awaitable[bytes]]) -> bytes:
        value = await fill()
        try:
            await self._call(lambda b: b.store(key, value, ttl))
        except Unavailable:
            pass
        return value

    async def purge_pages(self) -> None:
        """Delete every cached page now, not at its TTL: after an account is deleted no copy of
        its named confessions may linger (a bump only stops serving them). Counters stay, so
        rate limits do not reset. Unbounded by SLOW: it may scan; it is rare."""
        if self.backend is None:
            return
        try:
            await self.backend.purge_pages()
        except Exception as e:  # noqa: BLE001 - the pages still expire at their TTL
            log.warning("cache_purge_failed", error=str(e) or type(e).__name__)

    async def bump(self, *gens: str) -> None:
        try:
            await self._call(lambda b: b.bump(list(gens)))
        except Unavailable:
            self._lost = self.backend is not None

    async def get(self, kind: str, key: str) -> bytes | None:
        try:
            value = await self._call(lambda b: b.get(key))
        except Unavailable:
            value = None
        (self.hits if value is not None else self.misses)[kind] += 1
        return value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        try:
            await self._call(lambda b: b.store(key, value, ttl))
        except Unavailable:
            pass

    async def hit(self, key: str, ttl: float) -> int | None:
        """Count a hit in a shared window, or None when the cache is away (caller decides)."""
        try:
            return await self._call(lambda b: b.hit(key, ttl))
        except Unavailable:
            return None

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()


class Windows:
    """Hit counters in windows (login attempts): shared by every process through the cache, in
    this process while the cache is away — a limit never stops working, it only narrows."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.local = LocalCache()

    async def hit(self, key: str, ttl: float) -> int:
        count = await self.cache.hit(key, ttl)
        return count if count is not None else await self.local.hit(key, ttl)
