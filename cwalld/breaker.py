"""A circuit breaker: stop calling an endpoint that keeps failing, and try it with one probe.

Why: during an AI outage every job would still call the endpoint on each attempt — five
consumers, four attempts each — adding load to a service that is already down and making each
job wait for its timeout. After ``failures`` consecutive failures the breaker opens: calls fail
at once for ``cooldown`` seconds; then one call goes through (half-open). Its success closes the
breaker, its failure opens it again. Jobs keep their own retry schedule and end with the
fallback reply as in any outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class Breaker:
    def __init__(self, failures: int, cooldown: float, on_change: Callable[[State], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown, self.on_change, self.clock = failures, cooldown, on_change, clock
        self.state: State = "closed"
        self._streak = 0
        self._opened_at = 0.0

    def allow(self) -> bool:
        """May a call go out now? In half-open, only the one probe may."""
        if self.state == "open" and self.clock() - self._opened_at >= self.cooldown:
            self._set("half_open")
            return True  # the probe
        return self.state == "closed"

    def success(self) -> None:
        self._streak = 0
        if self.state != "closed":
            self._set("closed")

    def failure(self) -> None:
        self._streak += 1
        if self.state == "half_open" or (self.state == "closed" and self._streak >= self.failures):
            self._opened_at = self.clock()
            self._set("open")

    def _set(self, state: State) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(state)
