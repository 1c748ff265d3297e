"""Live updates: what a reader of the wall sees change, streamed to browsers as it happens.

Three kinds reach the streams: ``published`` (the public confession), ``empathy`` (``{id,
empathy_count}``) and ``removed`` (``{id}``). A domain event that makes one is appended to the
event log as ``(id, kind, confession id)`` and nothing else: no author, no text — so nothing in
the log, in Redis or on the wire can tie an anonymous confession to a person. Each process
renders an entry when it reaches its own streams, once for all of them, as anyone would see
the confession then.

The log keeps ``[events].replay_seconds``: a client that reconnects with ``Last-Event-ID``
within it gets what it missed, in order, each once (entries it has seen are skipped by id);
from further back it gets ``reset`` (reload the page). In this process the log is a deque
(``live/local.py``); in Redis mode a Redis stream (``live/redis.py``), whose ids order entries
from every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog

from cwalld import tasks
from cwalld.config import Events as Settings
from cwalld.domain import PUBLISHED, TooMany
from cwalld.events import Event, Kind
from cwalld.storage import Storage
from cwalld.views import confession_json

log = structlog.get_logger("cwalld.live")

LIVE: dict[Kind, str] = {
    "confession_published": "published",
    "confession_restored": "published",  # back on the wall
    "reply_regenerated": "published",  # the same confession, its new reply
    "confession_detached": "published",  # the same confession, with no author now
    "empathy_added": "empathy",
    "empathy_removed": "empathy",
    "confession_hidden": "removed",
    "confession_deleted": "removed",
    "confession_rejected": "removed",
}
EVENT_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,15}")
QUEUE_MAX = 1000  # entries waiting for one slow stream; past it the stream ends (the client replays)
APPENDS_MAX = 1000  # appends on their way to a slow log; past it live updates are dropped (a gap)


def order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class Entry:
    id: str  # "<ms>-<seq>", as Redis stream ids
    kind: str
    confession_id: int


class LogPort(Protocol):
    """Where entries are kept for the replay window and from where every process hears them."""

    async def append(self, kind: str, confession_id: int, window: float) -> None: ...  # window: seconds kept
    async def head(self) -> str: ...
    async def since(self, last_id: str, window: float) -> list[Entry] | None: ...  # None: older than the window
    async def follow(self, deliver: Callable[[Entry], None]) -> None: ...  # runs until cancelled
    async def close(self) -> None: ...


class Subscriber:
    """One open stream's queue: bounded, so a client that stops reading cannot grow memory."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.items: deque[Entry | None] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False

    def push(self, entry: Entry | None) -> None:
        if len(self.items) >= QUEUE_MAX:
            self.overflowed = True
        else:
            self.items.append(entry)
        self.wake.set()


class Live:
    def __init__(self, settings: Settings, storage: Storage, log_: LogPort) -> None:
        self.settings = settings
        self.storage = storage
        self.log = log_
        self.subscribers: set[Subscriber] = set()
        self.per_client: Counter[str] = Counter()
        self._rendered: OrderedDict[str, bytes | None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._appends: set[asyncio.Task[None]] = set()
        self._failing = False

    async def follow(self, event: Event) -> None:
        """The domain listener. It does not wait for the log: a silent Redis must not hold up a
        publish or an empathy (the change is made; only its live update is late or lost). The
        appends still reach the log in the order they were made (tasks start in order and the
        Redis client sends commands in the order they are issued)."""
        kind = LIVE.get(event.kind)
        if kind is None or event.confession_id is None:
            return
        if len(self._appends) >= APPENDS_MAX:
            self._failed("too many live updates waiting for the log")
            return
        task = asyncio.ensure_future(self._append(kind, event.confession_id))
        self._appends.add(task)
        task.add_done_callback(self._appends.discard)

    async def _append(self, kind: str, confession_id: int) -> None:
        try:
            await self.log.append(kind, confession_id, self.settings.replay_seconds)
            self._failing = False
        except Exception as e:  # noqa: BLE001 - Redis away: live updates pause, the change stands
            self._failed(str(e))

    def _failed(self, why: str) -> None:
        if not self._failing:  # once per episode, not once per event
            self._failing = True
            log.warning("live_append_failed", error=why)

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="live")

    async def _follow(self) -> None:
        await self.log.follow(self._deliver)

    def end_streams(self) -> None:
        """At stop, before the HTTP server waits for its handlers: every stream ends (its client
        reconnects, to this process once it is back or to another)."""
        for sub in self.subscribers:
            sub.push(None)

    async def stop(self) -> None:
        self.end_streams()
        await asyncio.gather(*self._appends, return_exceptions=True)
        await tasks.cancel(self._task)
        await self.log.close()

    def _deliver(self, entry: Entry) -> None:
        for sub in self.subscribers:
            sub.push(entry)

    def open(self, client: str) -> Subscriber:
        """A new stream for ``client``; TooMany past ``[events].max_per_client``."""
        if self.per_client[client] >= self.settings.max_per_client:
            raise TooMany("too_many_streams", "too many open event streams from this address", 5)
        self.per_client[client] += 1
        sub = Subscriber(client)
        self.subscribers.add(sub)
        return sub

    def close(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self.per_client[sub.client] -= 1
        if self.per_client[sub.client] <= 0:
            del self.per_client[sub.client]

    async def stream(self, sub: Subscriber, last_id: str | None) -> AsyncIterator[bytes]:
        """The SSE text of ``sub``: what was missed since ``last_id``, then every entry as it
        comes, a comment line every ``heartbeat`` seconds. Ends at stop or on overflow."""
        yield b"retry: 2000\n"
        sent = last_id
        if last_id is None:
            yield f"id: {await self.log.head()}\n\n".encode()  # where a reconnect resumes
        else:
            missed = await self.log.since(last_id, self.settings.replay_seconds)
            if missed is None:
                yield b"event: reset\ndata: {}\n\n"
                sent = None
                missed = []
            else:
                yield b"\n"
            for entry in missed:
                text = await self._render(entry)
                if text:
                    yield text
                sent = entry.id
        while not sub.overflowed:
            if not sub.items:
                sub.wake.clear()
                try:
                    await asyncio.wait_for(sub.wake.wait(), self.settings.heartbeat)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                continue
            item = sub.items.popleft()
            if item is None:
                return
            entry = item
            if sent is not None and order(entry.id) <= order(sent):
                continue  # already sent by the replay
            text = await self._render(entry)
            if text:
                yield text
            sent = entry.id

    async def watch(self, sub: Subscriber, kind: str, read: Callable[[], Awaitable[Any]],
                    every: float = 1.0) -> AsyncIterator[bytes]:
        """The SSE text of a value that is read, not told: ``read()`` every ``every`` seconds,
        sent as event ``kind`` when it changed (so at most once per ``every``), a comment line
        when nothing was sent for ``heartbeat`` seconds. No ids: a reconnect gets the value now,
        which is all there is to miss. A failed read skips its turn (the backend is away)."""
        loop = asyncio.get_running_loop()
        yield b"retry: 2000\n\n"
        last: Any = None
        sent_at = loop.time()
        while True:
            try:
                value = await read()
            except Exception:  # noqa: BLE001 - /readyz says what is away; the stream waits for it
                value = last
            if value != last:
                last, sent_at = value, loop.time()
                yield f"event: {kind}\ndata: ".encode() + orjson.dumps(value) + b"\n\n"
            elif loop.time() - sent_at >= self.settings.heartbeat:
                sent_at = loop.time()
                yield b": keep-alive\n\n"
            deadline = loop.time() + every
            while (left := deadline - loop.time()) > 0:  # the wall's entries wake it: they are dropped
                if None in sub.items:
                    return  # stop
                sub.items.clear()
                sub.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), left)

    async def _render(self, entry: Entry) -> bytes | None:
        """An entry as SSE text, made once per process (the confession as anyone sees it now)."""
        if entry.id in self._rendered:
            return self._rendered[entry.id]
        c = await self.storage.confession(entry.confession_id)
        data: dict[str, Any] | None
        if entry.kind == "published":
            data = confession_json(c, False, None) if c is not None and c.status == PUBLISHED else None
        elif entry.kind == "empathy":
            data = {"id": entry.confession_id, "empathy_count": c.empathy_count} if c is not None else None
        else:
            data = {"id": entry.confession_id}
        text = None if data is None else (
            f"id: {entry.id}\nevent: {entry.kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")
        self._rendered[entry.id] = text
        while len(self._rendered) > 1024:
            self._rendered.popitem(last=False)
        return text
