"""The control socket: the admin handlers on a Unix socket, for ``cwalld queue|cache|jobs``.

In embedded mode the queue and cache live inside the daemon, so the CLI must ask the daemon.
The socket is created with mode 0600: whoever can open it is the operator, no token needed.
One operation is the socket's alone: ``backup`` writes a file on the server, a power no HTTP
client gets.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sqlite3
from pathlib import Path

import structlog
from aiohttp import web

from cwalld.http import admin, errors, schema
from cwalld.http.json import respond
from cwalld.http.openapi import json_body, obj
from cwalld.http.keys import SCHEDULER, TRUSTED, WALL
from cwalld.scheduler import Scheduler
from cwalld.wall import Wall

log = structlog.get_logger("cwalld.control")

RESTART_KEYS = ("server.control_socket",)  # bound at start


def create(wall: Wall, scheduler: Scheduler) -> web.Application:
    @web.middleware
    async def as_json(request: web.Request, handler):  # type: ignore[no-untyped-def]
        return await errors.handle(request, handler)

    app = web.Application(middlewares=[as_json])
    app[TRUSTED] = True
    app[WALL] = wall
    app[SCHEDULER] = scheduler
    schema.add(app, [*admin.operations(wall.config), BACKUP])
    return app


async def take_backup(request: web.Request, i: schema.Input) -> web.Response:
    try:
        return respond(await request.app[WALL].storage.backup(i.body["file"]))
    except (OSError, sqlite3.Error, NotImplementedError) as e:  # the operator's to read; the daemon serves on
        log.error("backup_failed", file=i.body["file"], error=str(e))
        raise errors.ApiError(500, f"backup failed: {e}", "backup_failed") from None


BACKUP = schema.Operation(
    "POST", admin.PREFIX + "/backup", take_backup, "backup", "control", "An online, checked copy of the database",
    {"200": json_body(obj({"file": {"type": "string"}, "bytes": {"type": "integer"}, "seconds": {"type": "number"},
                           "counts": {"type": "object"}}))}, "422",
    body=obj({"file": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "an absolute path"}}))


def in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


async def start(app: web.Application, path: str) -> web.AppRunner | None:
    """Listen on ``path`` (mode 0600). A live daemon already on it is a start error: two daemons
    on one socket would leave the CLI talking to whichever answered."""
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.path.exists(path):
        if in_use(path):
            raise OSError(errno.EADDRINUSE, "another running cwalld listens on it; give this one its own"
                                            " [server].control_socket (or leave it empty: one per port)")
        os.unlink(path)  # left behind by a daemon that did not stop cleanly
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    old = os.umask(0o177)
    try:
        await web.UnixSite(runner, path).start()
    finally:
        os.umask(old)
    return runner


async def stop(runner: web.AppRunner | None, path: str) -> None:
    if runner is not None:
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
