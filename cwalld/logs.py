"""Logging: one JSON object per line on stdout (journald keeps it), or console lines for humans.

``[log].format = "auto"`` (the default) picks coloured console lines when stdout is a terminal and
JSON otherwise. Under journald (``$JOURNAL_STREAM`` names stdout) each JSON line starts with its
syslog priority, ``<4>`` for a warning, so ``journalctl -p warning`` shows exactly the warnings
and errors (journald strips the prefix).

Never log a password, token, API key or the author of an anonymous confession: log ids of
confessions and jobs, not of people.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


# The id of the request being served, on every line logged while serving it. One variable of
# our own, not structlog's bind_contextvars: its merge copies the whole context on every line
# (measured: ~5 µs of a ~55 µs request, bind and reset included).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def _with_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


_batchers: list[LineBatcher] = []
# The access line, one per request, skips structlog's processor chain when lines are JSON:
# profiled at ~25-40 µs of CPU per request through the chain, ~3 µs rendered here.
_access: dict[str, Any] = {"enabled": True, "batcher": None, "prefix": b""}


def access(request_id: str, method: str, path: str, status: int, seconds: float, client: str | None = None) -> None:
    """The access line; ``client`` only where ``[log].client_addresses`` asks for it."""
    if not _access["enabled"]:
        return
    batcher = _access["batcher"]
    if batcher is None:
        extra = {"client": client} if client is not None else {}
        structlog.get_logger("cwalld.http").info("request", method=method, path=path, status=status,
                                                 ms=round(seconds * 1000, 1), request_id=request_id, **extra)
        return
    # Kept as its parts and rendered when the batch is written, in one pass over the loop
    # iteration's lines: rendering at each request measured ~10 µs of a ~52 µs /healthz in the
    # daemon (1.6 µs in a tight loop); rendered in the batch, /healthz cost 46 µs instead of 52.
    batcher.pending.append((method, path, status, seconds, request_id, client, time.time()))
    batcher.schedule()


def _render_access(method: str, path: str, status: int, seconds: float, request_id: str, client: str | None,
                   when: float) -> bytes:
    # One bytes format: the line structlog would render, at a third of the cost of a dict through
    # orjson. Only the path and a client-sent request id need JSON escaping (a method is a token).
    prefix: bytes = _access["prefix"]
    return prefix + _ACCESS % (method.encode(), orjson.dumps(path), status, seconds * 1000,
                               orjson.dumps(request_id),
                               b',"client":' + orjson.dumps(client) if client is not None else b"",
                               _timestamp(when).encode())


_ACCESS = (b'{"method":"%s","path":%s,"status":%d,"ms":%.1f,"event":"request","request_id":%s%s,'
           b'"level":"info","timestamp":"%s"}\n')


_second: list[object] = [-1, ""]  # the last whole second formatted, and its text


def _timestamp(now: float) -> str:
    """``2026-11-29T21:24:54.123456Z`` (as structlog's), formatting the date once a second."""
    whole = int(now)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


def flush() -> None:
    """Write out lines still waiting for the event loop (at stop)."""
    for b in _batchers:
        b.flush()


PRIORITY = {"debug": b"<7>", "info": b"<6>", "warning": b"<4>", "error": b"<3>", "critical": b"<2>"}


def resolve(fmt: str, stream: Any = None) -> str:
    """``json`` or ``console`` for the configured format: ``auto`` asks whether ``stream``
    (stdout) is a terminal."""
    if fmt != "auto":
        return fmt
    stream = sys.stdout if stream is None else stream
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def under_journald(env: Any = None, stream: Any = None) -> bool:
    """Is ``stream`` (stdout) the journald stream ``$JOURNAL_STREAM`` (``device:inode``) names?"""
    named = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        st = os.fstat((sys.stdout if stream is None else stream).fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return named == f"{st.st_dev}:{st.st_ino}"


def setup(level: str = "info", fmt: str = "auto") -> None:
    processors: list[structlog.typing.Processor] = [
        _with_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    fmt = resolve(fmt)
    if fmt == "json":
        # Tracebacks without local variables: a frame's locals may hold a password or a token.
        tracebacks = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        journald = under_journald()
        _access["prefix"] = PRIORITY["info"] if journald else b""

        def render(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
            line = _dumps(event)
            return PRIORITY.get(event.get("level", ""), b"<6>") + line if journald else line

        processors += [tracebacks, render]
        batched = LineBatcher(sys.stdout.buffer)
        _batchers[:] = [batched]
        _access["batcher"] = batched
        factory: Any = lambda *_: batched  # noqa: E731 - one writer shared by every logger
    else:
        colors = sys.stdout.isatty()
        processors.append(structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback))
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
        self.pending: list[bytes | tuple[Any, ...]] = []  # lines, or an access line's parts
        self._scheduled = False
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        self.pending.append(message + b"\n")
        self.schedule()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg

    def schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self.pending:
            data = b"".join(line if type(line) is bytes else _render_access(*line) for line in self.pending)
            self.pending.clear()
            try:
                self._file.write(data)
                self._file.flush()
            except (OSError, ValueError):  # stdout closed (e.g. at exit): nothing left to tell
                pass


def _dumps(obj: object, **_: object) -> bytes:
    return orjson.dumps(obj, default=str)
