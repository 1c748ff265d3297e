"""Logging: one JSON object per line on stdout (journald keeps it), or console lines for humans.

Never log a password, token, API key or the author of an anonymous confession: log ids of
confessions and jobs, not of people.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback))
        factory = structlog.PrintLoggerFactory()  # sys.stdout as it is when logging
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, asyncio) speak stdlib logging: keep their warnings, on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _dumps(obj: object, **_: object) -> bytes:
    return orjson.dumps(obj, default=str)
