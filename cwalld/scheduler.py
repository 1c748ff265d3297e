"""Cron jobs inside the daemon (croniter), each tick run once across every process.

Why no Redis lock: a tick is claimed by inserting ``(job, scheduled time)`` into ``job_runs``
under a UNIQUE constraint, in the database every process already shares. Exactly one insert
wins, whatever the processes, with or without Redis, and the row then records the run's start,
end, result and error. At start each job claims its latest past tick: if no run holds it, the
daemon was down then, and it runs once now — one catch-up, never a storm. A fresh database
missed nothing, and a reload neither: they start with no catch-up.

A run is a task of its own, apart from the loop that waits for the next tick: a reload replaces
the loops and never cancels a run (new schedules apply after it ends). A claim whose run died
(kill -9) stays unfinished; after ``claim_timeout`` it may be claimed again, once. A run cut
short by a stop gives its claim back at once, so the next start runs that tick. Failing to
record a run is logged, never the end of the job's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import structlog
from croniter import croniter

from cwalld import tasks
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


STOP_GRACE = 5.0  # seconds a stop lets running jobs finish before cutting them short


class Scheduler:
    def __init__(self, storage: Storage, jobs: list[Job], timezone: str = "UTC", claim_timeout: float = 600.0) -> None:
        self.storage = storage
        self.jobs = {j.name: j for j in jobs}
        self.tz = ZoneInfo(timezone)
        self.claim_timeout = claim_timeout
        self._loops: list[asyncio.Task[None]] = []
        self._starting: set[str] = set()  # jobs whose start-up catch-up has not ended
        self._runs: dict[str, asyncio.Task[dict[str, Any] | None]] = {}  # the running tick of each job

    async def start(self, catch_up: bool = True) -> None:
        """Start each job's loop; with ``catch_up`` it first runs the job's latest past tick
        unless a run holds it (the daemon was down then)."""
        self._starting = set(self.jobs) if catch_up else set()
        self._loops = [asyncio.create_task(self._loop(job, catch_up), name=f"job-{job.name}")
                       for job in self.jobs.values()]

    @property
    def caught_up(self) -> bool:
        """Every start-up catch-up run has ended (or there were none)."""
        return not self._starting

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the loops; give running jobs ``grace``, then cut them short (their ticks are
        given back, so the next start runs them)."""
        await self._stop_loops()
        runs = list(self._runs.values())
        if runs:
            await asyncio.wait(runs, timeout=grace)
        await tasks.cancel(*runs)

    async def _stop_loops(self) -> None:
        await tasks.cancel(*self._loops)
        self._loops = []

    async def reschedule(self, jobs: list[Job], timezone: str, claim_timeout: float | None = None) -> None:
        """New schedules (a config reload): the loops restart, if they ran; running jobs run on."""
        was_running = bool(self._loops)
        await self._stop_loops()
        self.jobs, self.tz = {j.name: j for j in jobs}, ZoneInfo(timezone)
        if claim_timeout is not None:
            self.claim_timeout = claim_timeout
        if was_running:  # a process without the scheduler role only describes the jobs
            await self.start(catch_up=False)

    @property
    def running(self) -> bool:
        return bool(self._loops) and not any(t.done() for t in self._loops)

    def next_run(self, job: Job) -> datetime:
        due: datetime = croniter(job.schedule, datetime.now(self.tz)).get_next(datetime)
        return due

    def last_tick(self, job: Job) -> str:
        return _iso(croniter(job.schedule, datetime.now(self.tz)).get_prev(datetime))

    async def _loop(self, job: Job, catch_up: bool) -> None:
        if catch_up:
            try:
                await self._tick(job, self.last_tick(job))  # runs only if that tick has no live run
            finally:
                self._starting.discard(job.name)
        ticks = croniter(job.schedule, datetime.now(self.tz))
        while True:
            due: datetime = ticks.get_next(datetime)
            await asyncio.sleep(max(0.0, due.timestamp() - time.time()))
            await self._tick(job, _iso(due))

    async def _tick(self, job: Job, scheduled_for: str) -> None:
        """Claim and run one tick in a task of its own, which the loop waits for but, cancelled
        (a reload), leaves running. One run of a job at a time: a tick that comes while the
        previous run still runs waits for it."""
        previous = self._runs.get(job.name)
        if previous is not None:
            await asyncio.shield(previous)
        run = asyncio.create_task(self._claim_and_run(job, scheduled_for), name=f"run-{job.name}")
        self._runs[job.name] = run
        run.add_done_callback(lambda done: self._runs.pop(job.name, None) if self._runs.get(job.name) is done else None)
        await asyncio.shield(run)

    async def _claim_and_run(self, job: Job, scheduled_for: str) -> dict[str, Any] | None:
        try:
            run_id = await self.storage.claim_run(job.name, scheduled_for, self.claim_timeout)
        except Exception as e:  # noqa: BLE001 - the database is away: the next tick tries again
            log.warning("job_claim_failed", job=job.name, error=str(e))
            return None
        if run_id is None:
            return None
        return await self._run(job, run_id)

    async def _run(self, job: Job, run_id: int) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = await job.run()
        except asyncio.CancelledError:
            log.warning("job_run_cancelled", job=job.name, ms=_ms(started))
            with contextlib.suppress(Exception):  # give the tick back: the next start runs it
                await asyncio.shield(self.storage.release_run(run_id))
            raise
        except Exception as e:  # noqa: BLE001 - a failing job is recorded; the scheduler goes on
            error = f"{type(e).__name__}: {e}"[:500]
            log.error("job_run_failed", job=job.name, error=error, ms=_ms(started))
        else:
            log.info("job_run", job=job.name, result=result, ms=_ms(started))
        try:
            await self.storage.finish_run(run_id, orjson.dumps(result).decode() if result is not None else None, error)
        except Exception as e:  # noqa: BLE001 - the run happened; failing to record it ends nothing
            log.error("job_record_failed", job=job.name, error=str(e))
        return result if result is not None else {"error": error}

    async def run_now(self, name: str) -> dict[str, Any]:
        """An operator's run, outside the schedule (recorded like any other)."""
        job = self.jobs.get(name)
        if job is None:
            raise NotFound(f"no job {name!r}; jobs: {', '.join(self.jobs)}")
        run_id = await self.storage.claim_run(name, f"manual {_iso(datetime.now(self.tz))}", self.claim_timeout)
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


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
