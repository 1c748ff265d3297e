"""How late the event loop wakes up: the daemon's own busyness, told apart from a slow peer.

An answer from Redis that arrives 60 ms after the call while the loop needs 80 ms a turn was not
slow on Redis's side: it waited for us. The cache asks here before it blames its backend, so a
load that keeps the loop busy is not made worse by putting the cache aside. A blocked loop also
shows in ``cwalld_event_loop_lag_seconds`` (and starves the watchdog).
"""

from __future__ import annotations

import asyncio
from collections import deque

from cwalld import metrics


class LoopLag:
    def __init__(self, every: float = 0.1, window: int = 10) -> None:
        self.every = every
        self._recent: deque[float] = deque([0.0], maxlen=window)  # how late each recent sleep woke up

    def __call__(self) -> float:
        """The worst lag of the last ``window`` samples (a second): one sample lands anywhere in
        a busy turn, the worst of ten is close to the whole turn."""
        return max(self._recent)

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.every)
            late = max(0.0, loop.time() - started - self.every)
            self._recent.append(late)
            metrics.LOOP_LAG.set(late)
