"""Cron jobs inside the daemon (croniter), each tick run once across every process.

Why no Redis lock: a tick is claimed by inserting ``(job, scheduled time)`` into ``job_runs``
under a UNIQUE constraint, in the database every process already shares. Exactly one insert
wins, whatever the processes, with or without Redis, and the row then records the run's start,
end, result and error. At start each job claims its latest past tick: if no run holds it, the
daemon was down then, and it runs once now — one catch-up, never a storm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import structlog
from croniter import croniter

from cwalld.domain import NotFound
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.scheduler")

JobFn = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    schedule: str
    run: JobFn


def _iso(t: datetime) -> str:
    return t.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Scheduler:
    def __init__(self, storage: Storage, jobs: list[Job], timezone: str = "UTC") -> None:
        self.storage = storage
        self.jobs = {j.name: j for j in jobs}
        self.tz = ZoneInfo(timezone)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(job), name=f"job-{job.name}") for job in self.jobs.values()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def reschedule(self, jobs: list[Job], timezone: str) -> None:
        """New schedules (a config reload): the loops restart; claimed ticks stay claimed."""
        await self.stop()
        self.jobs, self.tz = {j.name: j for j in jobs}, ZoneInfo(timezone)
        await self.start()

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def next_run(self, job: Job) -> datetime:
        return croniter(job.schedule, datetime.now(self.tz)).get_next(datetime)

    async def _loop(self, job: Job) -> None:
        missed = croniter(job.schedule, datetime.now(self.tz)).get_prev(datetime)
        await self._tick(job, _iso(missed))  # runs only if that tick has no run yet
        ticks = croniter(job.schedule, datetime.now(self.tz))
        while True:
            due: datetime = ticks.get_next(datetime)
            await asyncio.sleep(max(0.0, due.timestamp() - time.time()))
            await self._tick(job, _iso(due))

    async def _tick(self, job: Job, scheduled_for: str) -> dict[str, Any] | None:
        try:
            run_id = await self.storage.claim_run(job.name, scheduled_for)
        except Exception as e:  # noqa: BLE001 - the database is away: the next tick tries again
            log.warning("job_claim_failed", job=job.name, error=str(e))
            return None
        if run_id is None:
            return None
        return await self._run(job, run_id)

    async def _run(self, job: Job, run_id: int) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result = await job.run()
        except Exception as e:  # noqa: BLE001 - a failing job is recorded; the scheduler goes on
            error = f"{type(e).__name__}: {e}"[:500]
            log.error("job_run_failed", job=job.name, error=error, ms=round((time.perf_counter() - started) * 1000, 1))
            await self.storage.finish_run(run_id, None, error)
            return {"error": error}
        log.info("job_run", job=job.name, result=result, ms=round((time.perf_counter() - started) * 1000, 1))
        await self.storage.finish_run(run_id, orjson.dumps(result).decode(), None)
        return result

    async def run_now(self, name: str) -> dict[str, Any]:
        """An operator's run, outside the schedule (recorded like any other)."""
        job = self.jobs.get(name)
        if job is None:
            raise NotFound(f"no job {name!r}; jobs: {', '.join(self.jobs)}")
        run_id = await self.storage.claim_run(name, f"manual {_iso(datetime.now(self.tz))}")
        assert run_id is not None
        return await self._run(job, run_id)

    async def describe(self) -> list[dict[str, Any]]:
        out = []
        for job in self.jobs.values():
            last = await self.storage.last_run(job.name)
            if last is not None:
                last = {k: last[k] for k in ("started_at", "finished_at", "error")} | {
                    "result": orjson.loads(last["result"]) if last["result"] else None}
            out.append({"name": job.name, "schedule": job.schedule,
                        "next_run": _iso(self.next_run(job)), "last_run": last})
        return out
