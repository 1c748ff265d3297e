"""Connections no client can hold: a request head must arrive within ``header_timeout``, and no
more than ``max_connections`` are open at once (a new one past it is closed at once; those open
keep being served). Idle keep-alive is aiohttp's ``keepalive_timeout``; a slow body is bounded
where it is read (``schema.parse_body``).

Why a handler subclass: aiohttp arms its keep-alive timer only once a request completed, so a
connection that never finishes its first head (slowloris) was never closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from cwalld.config import Server as ServerSettings


class Guard:
    """The listening socket's protocol factory, counting what it let in."""

    def __init__(self, server: web.Server, settings: ServerSettings) -> None:
        self.server, self.settings = server, settings
        self.open = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open >= self.settings.max_connections:
            return _Refused()
        # aiohttp keeps the handler's settings (keepalive_timeout, logger, …) on the server.
        kwargs: dict[str, Any] = getattr(self.server, "_kwargs", {})
        return _Guarded(self, self.server, loop=asyncio.get_running_loop(), **kwargs)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _Guarded(RequestHandler):
    def __init__(self, guard: Guard, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.head_since: float | None = None  # a request head has been arriving since
        self.watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.guard.open += 1
        self.head_since = self._loop.time()  # silence before the first byte counts too
        self._check()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.open -= 1
        if self.watch is not None:
            self.watch.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.head_since is None and not self._request_in_progress:
            self.head_since = self._loop.time()
        heads = self._request_count
        super().data_received(data)
        if self._request_count > heads:  # a head is complete: from here on it is the body's time
            self.head_since = None

    def _check(self) -> None:
        timeout = self.guard.settings.header_timeout
        if self.head_since is not None and self._loop.time() - self.head_since > timeout:
            self.force_close()
            return
        self.watch = self._loop.call_later(min(1.0, timeout / 2), self._check)
