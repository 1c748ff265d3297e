"""Typed keys for what the aiohttp app carries."""

from aiohttp import web

from cwalld.config import Config
from cwalld.domain import User
from cwalld.service import Wall

WALL = web.AppKey("wall", Wall)
CONFIG = web.AppKey("config", Config)
USER = web.RequestKey("user", User | None)  # type: ignore[arg-type]
