"""The job queue port: one AI job per pending confession, run by a pool of consumers.

Backends (``queue.local`` in-process, ``queue.redis`` shared) own *where* jobs wait; what an
attempt means — the timeout, the retry schedule, the last-resort ``give_up`` — lives here once,
in ``run_attempt``, so both backends behave the same and one contract suite tests both.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal, Protocol

import structlog

from cwalld import metrics
from cwalld.config import Queue as QueueSettings

log = structlog.get_logger("cwalld.queue")


Done = Literal["completed", "fallback", "held"]
"""How a job ended well: done, done with a fallback reply, or held (moderation was unavailable
and ``[moderation].on_unavailable = "hold"``: the confession waits, see ``jobs.recovery``)."""

FINISHED = ("completed", "fallback", "held", "failed")
"""The finished records a queue keeps, one per state, for ``stats`` and ``retry_failed``."""


class Handler(Protocol):
    async def run(self, confession_id: int) -> Done:
        """Do the job; raise to have it retried. Must be idempotent: it may run twice."""

    async def give_up(self, confession_id: int) -> Done:
        """Called once every retry has failed (e.g. publish with a fallback reply)."""


class JobQueue(Protocol):
    @property
    def RESTART_KEYS(self) -> tuple[str, ...]:  # noqa: N802 - a constant of each backend
        """The settings this backend reads only at start."""

    on_recovered: Callable[[], object] | None
    """Called when the backend answers again after an outage (jobs may have been lost)."""

    def reconfigure(self, settings: QueueSettings) -> None:
        """A reload: new timeouts, retries and retention apply to the next job."""

    async def enqueue(self, confession_id: int) -> bool:
        """Queue the confession's job; False if it already has one waiting, delayed or active."""

    async def start(self, handler: Handler) -> None: ...

    async def stop(self, grace: float) -> None:
        """Stop taking jobs; let active ones finish for up to ``grace`` seconds."""

    async def stats(self) -> dict[str, int]:
        """``{waiting, active, delayed}``, a count per ``FINISHED`` state, and ``total``."""

    async def clean(self, grace: float) -> int:
        """Forget finished job records older than ``grace`` seconds; returns how many."""

    async def retry_failed(self) -> int:
        """Queue every failed job again; returns how many."""

    async def ping(self) -> None:
        """Raise if the queue's backend cannot be reached."""

    @property
    def consumers(self) -> int:
        """Consumers running in this process (0 when stopped)."""


Outcome = Literal["completed", "fallback", "held", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    delay: float = 0.0
    error: str | None = None


async def run_attempt(handler: Handler, settings: QueueSettings, job_id: str, confession_id: int, attempt: int) -> Result:
    """Run attempt number ``attempt`` (1-based) of a job and say what should happen next.

    A failure may say more: ``permanent = True`` (trying again cannot help: give up now) and
    ``retry_after`` (seconds the other side asked us to wait: the backoff schedule is the floor)."""
    started = time.perf_counter()
    ctx = {"job_id": job_id, "confession_id": confession_id, "attempt": attempt}
    try:
        async with asyncio.timeout(settings.job_timeout):
            done = await handler.run(confession_id)
    except Exception as e:  # noqa: BLE001 - every failure of a job is retried, then given up
        error = _describe(e)
        if attempt <= settings.retries and not getattr(e, "permanent", False):
            delay = max(settings.backoff[min(attempt - 1, len(settings.backoff) - 1)],
                        getattr(e, "retry_after", None) or 0.0)
            log.warning("job_retried", **ctx, error=error, delay=delay, ms=_ms(started))
            _count("retried", started)
            return Result("retry", delay, error)
        try:
            async with asyncio.timeout(settings.job_timeout):
                done = await handler.give_up(confession_id)
        except Exception as e2:  # noqa: BLE001
            log.error("job_failed", **ctx, error=f"{error}; give_up: {_describe(e2)}", ms=_ms(started))
            _count("failed", started)
            return Result("failed", error=_describe(e2))
        log.info(_EVENTS[done], **ctx, error=error, ms=_ms(started))
        _count(_EVENTS[done][4:], started)
        return Result(done, error=error)
    log.info(_EVENTS[done], **ctx, ms=_ms(started))
    _count(_EVENTS[done][4:], started)
    return Result(done)


_EVENTS: dict[Done, str] = {"completed": "job_completed", "fallback": "job_fallback_used", "held": "job_held"}


def _count(event: str, started: float) -> None:
    metrics.JOBS.labels(event).inc()
    metrics.JOB_SECONDS.labels(event).observe(time.perf_counter() - started)


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timeout"
    return f"{type(e).__name__}: {e}"[:300]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
