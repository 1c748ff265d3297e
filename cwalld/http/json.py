"""JSON in and out of HTTP: orjson, bodies checked before a handler sees them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from cwalld.domain import Invalid
from cwalld.http.errors import ApiError


def respond(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


async def body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a clear 415 / 400 / 413 / 422."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    raw = await request.read()  # aiohttp raises 413 past client_max_size
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"body is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(data, dict):
        raise Invalid({"body": "must be a JSON object"})
    return data


def limit_param(request: web.Request, default: int = 20, most: int = 50) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise Invalid({"limit": f"an integer from 1 to {most}"})
    return int(raw)
