"""Typed keys for what the aiohttp app carries."""

from aiohttp import web

from cwalld.domain import User
from cwalld.scheduler import Scheduler
from cwalld.wall import Wall

WALL = web.AppKey("wall", Wall)
OPENAPI = web.AppKey("openapi", dict)  # the document, made once from the operations served
SCHEDULER = web.AppKey("scheduler", Scheduler)
TRUSTED = web.AppKey("trusted", bool)  # the control-socket app: no tokens, the socket's mode guards it
USER: web.RequestKey[User | None] = web.RequestKey("user", User | None)  # type: ignore[arg-type]
