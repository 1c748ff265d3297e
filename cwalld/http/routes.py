"""HTTP handlers: parse, call the service, shape JSON. No rules live here."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import hdrs, web

from cwalld import metrics
from cwalld.domain import Unauthorized
from cwalld.http import admin, auth
from cwalld.http.json import body, limit_param, respond
from cwalld.http.keys import SCHEDULER, WALL
from cwalld.http.openapi import document
from cwalld.views import Body, confession_json, user_json

ID = r"{id:\d{1,18}}"


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_endpoint)
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_get("/api/v1/categories", categories)
    r.add_get("/api/v1/stats", stats)
    r.add_post("/api/v1/auth/register", register)
    r.add_post("/api/v1/auth/login", login)
    r.add_post("/api/v1/auth/logout", logout)
    r.add_get("/api/v1/me", me)
    r.add_get("/api/v1/me/confessions", my_confessions)
    r.add_get("/api/v1/confessions", feed)
    r.add_post("/api/v1/confessions", post_confession)
    r.add_get("/api/v1/confessions/popular", popular)
    r.add_get(f"/api/v1/confessions/{ID}", get_confession)
    r.add_delete(f"/api/v1/confessions/{ID}", delete_confession)
    r.add_put(f"/api/v1/confessions/{ID}/empathy", empathy_on)
    r.add_delete(f"/api/v1/confessions/{ID}/empathy", empathy_off)
    r.add_post(f"/api/v1/confessions/{ID}/report", report)
    admin.setup(app)


# --- shaping ---


def id_param(request: web.Request) -> int:
    return int(request.match_info["id"])


# --- public ---


async def healthz(request: web.Request) -> web.Response:
    return respond({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers, Redis (if configured) answers, consumers and the
    scheduler run. 503 otherwise, with what is wrong."""
    wall, scheduler = request.app[WALL], request.app[SCHEDULER]
    state: dict[str, object] = {"db": "ok", "redis": "disabled", "consumers": wall.queue.consumers,
                                "scheduler": "ok" if scheduler.running else "stopped"}
    try:
        async with asyncio.timeout(2):
            await wall.storage.ping()
        state["db"] = wall.storage.health  # reads may work while writes fail (a full disk)
    except Exception:  # noqa: BLE001
        state["db"] = "down"
    if wall.config.redis.url:
        try:
            async with asyncio.timeout(1):
                await wall.queue.ping()
            state["redis"] = "ok"
        except Exception:  # noqa: BLE001
            state["redis"] = "down"
    ready = state["db"] == "ok" and state["redis"] != "down" and state["consumers"] and state["scheduler"] == "ok"
    return respond(state, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    wall = request.app[WALL]
    token = wall.config.server.metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        raise Unauthorized("metrics need the metrics token")
    try:
        queue = await wall.queue.stats()
    except Exception:  # noqa: BLE001 - Redis away: the rest of the metrics still matter
        queue = {}
    cache = wall.cache
    body = metrics.render(metrics.DaemonCollector(lambda: queue, lambda: dict(cache.hits), lambda: dict(cache.misses)))
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return respond(document())


async def categories(request: web.Request) -> web.Response:
    return respond({"categories": [{"slug": s, "name": n} for s, n in request.app[WALL].confessions.categories.items()]})


def send(request: web.Request, b: Body) -> web.Response:
    """Cached bytes as they are, with an ETag; 304 when the client has them already."""
    headers = {hdrs.ETAG: b.etag, hdrs.CACHE_CONTROL: "no-cache"}
    if b.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=b.data, content_type="application/json", headers=headers)


async def stats(request: web.Request) -> web.Response:
    return send(request, await request.app[WALL].views.stats())


async def feed(request: web.Request) -> web.Response:
    viewer = await auth.viewer(request)
    return send(request, await request.app[WALL].views.feed(
        viewer, request.query.get("category"), limit_param(request), request.query.get("cursor")))


async def popular(request: web.Request) -> web.Response:
    viewer = await auth.viewer(request)
    return send(request, await request.app[WALL].views.popular(viewer, limit_param(request)))


async def get_confession(request: web.Request) -> web.Response:
    viewer = await auth.viewer(request)
    c, marked = await request.app[WALL].confessions.get(viewer, id_param(request))
    return respond({"confession": confession_json(c, marked, viewer)})


# --- accounts ---


async def register(request: web.Request) -> web.Response:
    data = await body(request)
    token, user = await request.app[WALL].accounts.register(data.get("username"), data.get("password"), data.get("name"))
    return respond({"token": token, "user": user_json(user)}, status=201)


async def login(request: web.Request) -> web.Response:
    data = await body(request)
    token, user = await request.app[WALL].accounts.login(data.get("username"), data.get("password"))
    return respond({"token": token, "user": user_json(user)})


async def logout(request: web.Request) -> web.Response:
    await auth.signed_in(request)
    await request.app[WALL].accounts.logout(auth.bearer(request) or "")
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    user = await auth.signed_in(request)
    return respond({"user": user_json(await request.app[WALL].accounts.profile(user))})


async def my_confessions(request: web.Request) -> web.Response:
    user = await auth.signed_in(request)
    return send(request, await request.app[WALL].views.mine(user, limit_param(request), request.query.get("cursor")))


# --- signed in ---


async def post_confession(request: web.Request) -> web.Response:
    user = await auth.signed_in(request)
    data = await body(request)
    c = await request.app[WALL].confessions.post(user, data.get("content"), data.get("category"), data.get("anonymous", True))
    return respond({"confession": confession_json(c, False, user)}, status=202)


async def delete_confession(request: web.Request) -> web.Response:
    await request.app[WALL].confessions.delete(await auth.signed_in(request), id_param(request))
    return web.Response(status=204)


async def empathy_on(request: web.Request) -> web.Response:
    count = await request.app[WALL].confessions.empathy(await auth.signed_in(request), id_param(request), True)
    return respond({"empathy_count": count, "empathized": True})


async def empathy_off(request: web.Request) -> web.Response:
    count = await request.app[WALL].confessions.empathy(await auth.signed_in(request), id_param(request), False)
    return respond({"empathy_count": count, "empathized": False})


async def report(request: web.Request) -> web.Response:
    user = await auth.signed_in(request)
    reason = (await body(request)).get("reason") if request.can_read_body else None
    await request.app[WALL].confessions.report(user, id_param(request), reason)
    return respond({"reported": True}, status=202)
