"""aiohttp's server logger, replaced: a malformed request is a client's mistake, not our error.

aiohttp logs every request it cannot parse (a NUL in a header, a broken request line) with a
full ERROR traceback, so 2,000 bad requests made 1 MB of log. Here each becomes at most one
``bad_request`` warning a second with its reason and how many were held back since the last
line; anything else aiohttp reports keeps its level.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog

log = structlog.get_logger("cwalld.http")
EVERY = 1.0  # seconds between two bad_request lines


class ServerLog(logging.Logger):
    def __init__(self) -> None:
        super().__init__("cwalld.http.server")
        self._last = -EVERY
        self._held = 0

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        self.bad_request(str(error).strip().splitlines()[0] if error is not None and str(error).strip()
                         else type(error).__name__ if error is not None else str(msg))

    def bad_request(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last < EVERY:
            self._held += 1
            return
        log.warning("bad_request", reason=reason[:200], suppressed=self._held)
        self._last, self._held = now, 0
