"""Logging: one JSON object per line on stdout (journald keeps it), or console lines for humans.

Never log a password, token, API key or the author of an anonymous confession: log ids of
confessions and jobs, not of people.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from typing import Any, BinaryIO

import orjson
import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_batchers: list[LineBatcher] = []
# The access line, one per request, skips structlog's processor chain when lines are JSON:
# profiled at ~25-40 µs of CPU per request through the chain, ~3 µs rendered here.
_access: dict[str, object] = {"enabled": True, "batcher": None}


def access(request_id: str, method: str, path: str, status: int, seconds: float) -> None:
    if not _access["enabled"]:
        return
    batcher = _access["batcher"]
    if batcher is None:
        structlog.get_logger("cwalld.http").info("request", method=method, path=path, status=status,
                                                 ms=round(seconds * 1000, 1), request_id=request_id)
        return
    # One bytes format: the line structlog would render, at a third of the cost of a dict through
    # orjson. Only the path and a client-sent request id need JSON escaping (a method is a token).
    batcher.msg(_ACCESS % (method.encode(), orjson.dumps(path), status, seconds * 1000,  # type: ignore[attr-defined]
                           orjson.dumps(request_id), _timestamp().encode()))


_ACCESS = (b'{"method":"%s","path":%s,"status":%d,"ms":%.1f,"event":"request","request_id":%s,'
           b'"level":"info","timestamp":"%s"}')


_second: list[object] = [-1, ""]  # the last whole second formatted, and its text


def _timestamp() -> str:
    """``2026-11-29T21:24:54.123456Z`` (as structlog's), formatting the date once a second."""
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


def flush() -> None:
    """Write out lines still waiting for the event loop (at stop)."""
    for b in _batchers:
        b.flush()


def setup(level: str = "info", fmt: str = "json") -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        # Tracebacks without local variables: a frame's locals may hold a password or a token.
        tracebacks = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        processors += [tracebacks, structlog.processors.JSONRenderer(serializer=_dumps)]
        batched = LineBatcher(sys.stdout.buffer)
        _batchers[:] = [batched]
        _access["batcher"] = batched
        factory: Any = lambda *_: batched  # noqa: E731 - one writer shared by every logger
    else:
        processors.append(structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback))
        factory = structlog.PrintLoggerFactory()  # sys.stdout as it is when logging
        _access["batcher"] = None
    _access["enabled"] = LEVELS[level] <= logging.INFO
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, asyncio) speak stdlib logging: keep their warnings, on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


class LineBatcher:
    """A structlog logger for rendered JSON lines: the lines logged in one event-loop iteration
    go out in one write(2). Under load an access line per request would otherwise cost a system
    call each (profiled: ~7% of a cached feed request). Outside a running loop, writes at once."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._pending: list[bytes] = []
        self._scheduled = False
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        self._pending.append(message + b"\n")
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            try:
                self._file.write(data)
                self._file.flush()
            except (OSError, ValueError):  # stdout closed (e.g. at exit): nothing left to tell
                pass


def _dumps(obj: object, **_: object) -> bytes:
    return orjson.dumps(obj, default=str)
