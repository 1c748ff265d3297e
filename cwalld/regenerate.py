"""Fallback replies made good later: ``cwalld ai regenerate`` and ``POST /admin/ai/regenerate``.

A confession published during an AI outage (or with no API key) keeps its fallback reply until an
operator asks for this. One run walks the published confessions with a fallback reply since a
time, newest first, and for each asks the AI again (``replies.regenerate``): the reply is
replaced and ``ai_fallback`` cleared in one ``UPDATE … WHERE ai_fallback = 1`` — so a run twice,
or two runs at once, replace each reply once — the caches follow by the ``reply_regenerated``
event, and the confession keeps its place (``published_at`` is not touched).

Low priority and bounded: at most ``[ai].regenerate_per_minute`` confessions a minute, and none
while new confessions wait in the queue. A run lives in the process that started it; a second
request while it runs gets its progress. Nothing is lost if the process stops: run it again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field

import structlog

from cwalld import tasks
from cwalld.config import Config
from cwalld.domain import NotFound, iso_after
from cwalld.moderation import Moderation
from cwalld.queue import JobQueue
from cwalld.replies import Replies
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.regenerate")

IDLE_POLL = 0.5  # seconds between looks at the queue while new confessions wait


@dataclass
class Progress:
    since: str
    total: int
    dry_run: bool = False
    running: bool = False
    done: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {"replaced": 0, "hidden": 0, "kept": 0, "failed": 0})

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class Regenerate:
    def __init__(self, config: Config, storage: Storage, queue: JobQueue, replies: Replies,
                 moderation: Moderation) -> None:
        self.config, self.storage, self.queue, self.replies = config, storage, queue, replies
        self.moderation = moderation
        self.last: Progress | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, since_seconds: float | None, dry_run: bool) -> Progress:
        """Count (``dry_run``) or start regenerating the fallback replies published in the last
        ``since_seconds`` (None: all). A run in progress is not started twice: its progress is
        the answer."""
        if self.last is not None and self.last.running:
            return self.last
        since = iso_after(-since_seconds) if since_seconds is not None else ""
        ids = await self.storage.fallback_ids(since)
        progress = Progress(since=since, total=len(ids), dry_run=dry_run, running=not dry_run and bool(ids))
        if dry_run:
            return progress
        self.last = progress
        if ids:
            log.info("regenerate_started", total=len(ids), since=since or "all")
            self._task = asyncio.create_task(self._run(progress, ids), name="regenerate")
        return progress

    async def stop(self) -> None:
        await tasks.cancel(self._task)

    async def _run(self, progress: Progress, ids: list[int]) -> None:
        try:
            for cid in ids:
                started = time.monotonic()
                await self._behind_new_confessions()
                outcome = await self.replies.regenerate(cid)
                if outcome == "rejected":  # published unmoderated; moderation says no: an admin decides
                    outcome = await self._hide(cid)
                progress.outcomes[outcome] += 1
                progress.done += 1
                pause = 60 / self.config.ai.regenerate_per_minute - (time.monotonic() - started)
                if pause > 0 and progress.done < progress.total:
                    await asyncio.sleep(pause)
            log.info("regenerate_finished", total=progress.total, **progress.outcomes)
        finally:
            progress.running = False

    async def _hide(self, cid: int) -> str:
        try:
            await self.moderation.hide(cid, by="regenerate")
            return "hidden"
        except NotFound:  # deleted or hidden meanwhile
            return "kept"

    async def _behind_new_confessions(self) -> None:
        """Wait while new confessions wait for their AI job: they come first."""
        while True:
            try:
                if (await self.queue.stats())["waiting"] == 0:
                    return
            except Exception:  # noqa: BLE001 - a queue that cannot say does not stop the run
                return
            await asyncio.sleep(IDLE_POLL)
