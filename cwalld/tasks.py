"""Cancelling tasks so that they end: what every stop uses.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that lands as the operation it waits
for completes (python/cpython#86296, fixed in 3.12), and a task cancelled there goes on as if
nothing happened. Found when redis-py (our Redis client then) sent its commands through
``wait_for``: the live-events follower went into its next 15 s blocking XREAD, and the one after,
and the daemon's stop waited for ever. Libraries we still use wait the same way (asyncpg), and a
task may catch a cancel itself, so a stop cancels again, every ``AGAIN`` seconds, until the task
has ended — a task busy in its own cleanup gets that long before it is interrupted.
"""

from __future__ import annotations

import asyncio
from typing import Any

AGAIN = 0.5  # seconds between cancellations of a task that has not ended


async def cancel(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and return once every one has ended; their exceptions are retrieved."""
    given = [t for t in tasks if t is not None]
    while left := [t for t in given if not t.done()]:
        for t in left:
            t.cancel()
        await asyncio.wait(left, timeout=AGAIN)
    for t in given:
        if not t.cancelled():
            t.exception()  # retrieved: nobody else will
