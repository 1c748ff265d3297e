"""The aiohttp application: middlewares (request id + access log, CORS, errors) and routes."""

from __future__ import annotations

import itertools
import os
import time

import structlog
from aiohttp import web

from cwalld import logs, metrics
from cwalld.config import Config
from cwalld.http import client, docs, errors, openapi, routes, schema, web as page
from cwalld.http.keys import OPENAPI, SCHEDULER, WALL
from cwalld.scheduler import Scheduler
from cwalld.wall import Wall

log = structlog.get_logger("cwalld.http")
# Request ids: a random per-process prefix and a counter — unique across processes, and cheaper
# than uuid4 on every request.
_PREFIX = os.urandom(6).hex()
_SEQ = itertools.count(1)


@web.middleware
async def context(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Give every request an id (echo a sane ``X-Request-ID``), turn what a handler raised into
    the error shape (``errors.to_response``), and log one access line."""
    sent = request.headers.get("X-Request-ID", "")
    request_id = sent if 0 < len(sent) <= 128 and sent.isprintable() else f"{_PREFIX}{next(_SEQ):08x}"
    started = time.perf_counter()
    # other lines logged while serving the request carry its id; reset, not nested: keep-alive
    # requests on one connection share a task's context
    token = logs.REQUEST_ID.set(request_id)
    try:
        response = await errors.handle(request, handler)
    finally:
        logs.REQUEST_ID.reset(token)
    response.headers["X-Request-ID"] = request_id
    seconds = time.perf_counter() - started
    metrics.observe_request(request.match_info.route.resource, request.method, response.status, seconds)
    wall = request.app[WALL]
    logs.access(request_id, request.method, request.path, response.status, seconds,
                client.of(request) if wall.config.log.client_addresses else None)
    return response


def cors(origins: list[str]):  # type: ignore[no-untyped-def]
    allowed = set(origins)

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        origin = request.headers.get("Origin")
        ok = origin is not None and ("*" in allowed or origin in allowed)
        if ok and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-ID",
                "Access-Control-Max-Age": "600",
            })
        else:
            response = await errors.handle(request, handler)
        if ok:
            response.headers["Access-Control-Allow-Origin"] = origin  # type: ignore[assignment]
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After, ETag"
            response.headers["Vary"] = "Origin"
        return response

    return middleware


# Read when the app is built: a reload reports a change of these and keeps the running values.
RESTART_KEYS = ("server.host", "server.port", "server.max_body_bytes", "server.cors_origins", "server.header_timeout",
                "server.keepalive_timeout", "server.max_connections", "server.roles")


def create(config: Config, wall: Wall, scheduler: Scheduler) -> web.Application:
    middlewares = [context]
    if config.server.cors_origins:
        middlewares.append(cors(config.server.cors_origins))
    app = web.Application(middlewares=middlewares, client_max_size=config.server.max_body_bytes)
    app[WALL] = wall
    app[SCHEDULER] = scheduler
    operations = routes.operations(config)
    serving = "http" in config.server.roles
    if not serving:  # a worker process answers its operators only: health, readiness, metrics
        operations = [op for op in operations if op.tag == "operations"]
    app[OPENAPI] = openapi.document(operations)
    schema.add(app, operations)
    if serving:
        docs.add(app)
        page.add(app)

    async def end_streams(_: web.Application) -> None:  # before the server waits for its handlers
        wall.live.end_streams()

    app.on_shutdown.append(end_streams)
    return app
