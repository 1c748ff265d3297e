"""The in-process queue: an ``asyncio.Queue`` of confession ids and timers for delayed retries.

Nothing here survives the process, and nothing needs to: a job exists only for a confession that
SQLite holds as pending, and the daemon queues every pending confession again when it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cwalld import tasks
from cwalld.config import Queue as QueueSettings
from cwalld.queue import FINISHED, Handler, run_attempt

@dataclass(slots=True)
class _Job:
    state: str = "waiting"  # waiting | active | delayed
    attempt: int = 0


class LocalQueue:
    RESTART_KEYS = ("queue.concurrency",)  # the consumers are started with it

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self._ready: asyncio.Queue[int] = asyncio.Queue()
        self._live: dict[int, _Job] = {}  # by confession id: at most one job each
        self._timers: dict[int, asyncio.TimerHandle] = {}
        # finished records, as in Redis: state -> confession id -> finished at (monotonic)
        self._finished: dict[str, OrderedDict[int, float]] = {state: OrderedDict() for state in FINISHED}
        self._consumers: list[asyncio.Task[None]] = []
        self._idle: set[asyncio.Task[None]] = set()
        self._handler: Handler | None = None
        self._stopping = False
        self.on_recovered: Callable[[], object] | None = None  # never called: nothing here is lost

    def reconfigure(self, settings: QueueSettings) -> None:
        """A reload: timeouts, retries, backoff and retention apply to the next job."""
        self.settings = settings

    async def enqueue(self, confession_id: int) -> bool:
        if confession_id in self._live:
            return False
        for records in self._finished.values():
            records.pop(confession_id, None)
        self._live[confession_id] = _Job()
        self._ready.put_nowait(confession_id)
        return True

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._stopping = False
        self._consumers = [
            asyncio.create_task(self._consume(), name=f"consumer-{i}") for i in range(self.settings.concurrency)
        ]

    async def stop(self, grace: float) -> None:
        """Stop taking jobs at once; give active ones ``grace``. Whatever is left stays pending in
        SQLite and is queued again at the next start."""
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._idle:
            task.cancel()
        busy = [t for t in self._consumers if t not in self._idle]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        await tasks.cancel(*self._consumers)
        self._consumers = []

    async def _consume(self) -> None:
        me = asyncio.current_task()
        assert me is not None and self._handler is not None
        while not self._stopping:
            self._idle.add(me)
            try:
                cid = await self._ready.get()
            finally:
                self._idle.discard(me)
            job = self._live[cid]
            job.state, job.attempt = "active", job.attempt + 1
            result = await run_attempt(self._handler, self.settings, str(cid), cid, job.attempt)
            if result.outcome == "retry":
                job.state = "delayed"
                self._timers[cid] = asyncio.get_running_loop().call_later(result.delay, self._due, cid)
            else:
                del self._live[cid]
                self._record(result.outcome, cid)

    async def ping(self) -> None:
        return None

    @property
    def consumers(self) -> int:
        return sum(not t.done() for t in self._consumers)

    def _due(self, cid: int) -> None:
        self._timers.pop(cid, None)
        self._live[cid].state = "waiting"
        self._ready.put_nowait(cid)

    def _record(self, state: str, cid: int) -> None:
        """Keep finished records for stats and retry_failed, bounded by count and age."""
        records, now = self._finished[state], time.monotonic()
        records[cid] = now
        while records and (len(records) > self.settings.keep_finished
                           or next(iter(records.values())) < now - self.settings.keep_finished_seconds):
            records.popitem(last=False)

    async def stats(self) -> dict[str, int]:
        counts = {"waiting": 0, "active": 0, "delayed": 0}
        for job in self._live.values():
            counts[job.state] += 1
        counts |= {state: len(records) for state, records in self._finished.items()}
        return {**counts, "total": sum(counts.values())}

    async def clean(self, grace: float) -> int:
        cutoff, removed = time.monotonic() - grace, 0
        for records in self._finished.values():
            for cid in [cid for cid, at in records.items() if at <= cutoff]:
                del records[cid]
                removed += 1
        return removed

    async def retry_failed(self) -> int:
        failed = list(self._finished["failed"])
        self._finished["failed"].clear()
        return sum([await self.enqueue(cid) for cid in failed])
