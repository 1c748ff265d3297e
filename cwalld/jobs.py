"""The scheduled jobs: what runs on a schedule, and why.

- ``popular``: confessions with enough empathy become popular; their authors get the badge once.
- ``recovery``: how the queue catches up with the database, the truth — it queues again every
  confession pending past ``sweep_grace`` with no live job (a lost enqueue, a flushed Redis).
- ``queue_clean``: finished job records past ``keep_finished_seconds``.
- ``sessions_purge``: expired login tokens.
- ``backup``: an online copy of the database into ``[backup].dir``, the ``keep`` newest kept
  (not listed when ``[backup].schedule`` is empty, nor on PostgreSQL: its server's own backups,
  pg_dump or base backups, are the ones to trust).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import structlog

from cwalld import domain, metrics
from cwalld.config import Config
from cwalld.domain import VIRAL_BADGE
from cwalld.events import Event, Events
from cwalld.queue import JobQueue
from cwalld.scheduler import Job
from cwalld.storage import Storage, backup

log = structlog.get_logger("cwalld.jobs")


class Jobs:
    def __init__(self, config: Config, storage: Storage, queue: JobQueue, events: Events) -> None:
        self.config, self.storage, self.queue, self.events = config, storage, queue, events

    def schedule(self) -> list[Job]:
        s = self.config.scheduler
        return [
            Job("popular", self.config.popular.schedule, self.popular),
            Job("recovery", s.recovery, self.recovery),
            Job("queue_clean", s.queue_clean, self.queue_clean),
            Job("sessions_purge", s.sessions_purge, self.sessions_purge),
            *([Job("backup", self.config.backup.schedule, self.backup)] if self.config.backup.schedule and not self.config.storage.url else []),
        ]

    async def popular(self) -> dict[str, int]:
        p = self.config.popular  # fresh accounts cannot push a confession to the threshold
        result = await self.storage.mark_popular(p.threshold, VIRAL_BADGE, domain.iso_after(-p.min_account_age_hours * 3600))
        if result["newly_popular"]:
            await self.events.emit(Event("marked_popular"))
        if result["badges_awarded"]:
            await self.events.emit(Event("badge_awarded"))
        return result

    async def recovery(self) -> dict[str, int]:
        return {"queued": await self.requeue_pending(older_than=domain.iso_after(-self.config.queue.sweep_grace))}

    async def queue_clean(self) -> dict[str, int]:
        return {"removed": await self.queue.clean(self.config.queue.keep_finished_seconds)}

    async def sessions_purge(self) -> dict[str, int]:
        return {"deleted": await self.storage.purge_sessions()}

    async def backup(self) -> dict[str, object]:
        """A failed backup is the scheduler's error line and the ``cwalld_backups{outcome="failed"}``
        metric; the daemon goes on."""
        b = self.config.backup
        folder = b.folder(self.config.storage.path)
        name = f"{backup.PREFIX}{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.db"
        try:
            made = await self.storage.backup(str(Path(folder) / name))
        except Exception:
            metrics.BACKUPS.labels("failed").inc()
            raise
        metrics.BACKUPS.labels("ok").inc()
        pruned = await asyncio.to_thread(backup.prune, folder, b.keep)
        return {"file": made["file"], "bytes": made["bytes"], "seconds": made["seconds"], "pruned": len(pruned)}

    async def requeue_pending(self, older_than: str | None = None) -> int:
        """Queue every pending confession (at start: whatever a crash or restart left behind)."""
        queued = 0
        for cid in await self.storage.pending_ids(older_than):
            queued += await self.queue.enqueue(cid)
        if queued:
            log.info("pending_requeued", count=queued)
        return queued
