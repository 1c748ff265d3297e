"""HTTP handlers: each an ``Operation`` (what it takes, what it answers), thin over the use cases."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import hdrs, web

from cwalld import metrics
from cwalld.config import Config
from cwalld.domain import CONTENT_PATTERN, NAME_PATTERN, Invalid, Unauthorized, User, now
from cwalld.http import admin, auth, client, sse
from cwalld.http.json import respond
from cwalld.http.keys import OPENAPI, SCHEDULER, WALL
from cwalld.http.openapi import NOT_MODIFIED, PAGE, json_body, obj, ref
from cwalld.http.schema import CURSOR, LIMIT, Input, Operation, Param
from cwalld.live import EVENT_ID
from cwalld.views import Body, confession_json, user_json

ID = r"{id:\d{1,18}}"
EMPATHY = json_body(obj({"empathy_count": {"type": "integer"}, "empathized": {"type": "boolean"}}))
AUTH_OK = obj({"token": {"type": "string", "description": "absent with \"session\": \"cookie\""},
               "user": ref("User")}, ["user"])
SESSION_FIELD = {"type": "string", "enum": ["token", "cookie"], "default": "token",
                 "description": "cookie: the page's sign-in, an HttpOnly session cookie instead of a token"}
CONFESSION = json_body(obj({"confession": ref("Confession")}))


def operations(config: Config) -> list[Operation]:
    """Every public operation, its schemas built from the config (categories, length limits)."""
    categories = [c.slug for c in config.categories]
    limits = config.limits
    category = {"type": "string", "enum": categories}
    return [
        Operation("GET", "/healthz", healthz, "healthz", "operations", "Liveness",
                  {"200": json_body(obj({"status": {"const": "ok"}}))}),
        Operation("GET", "/readyz", readyz, "readyz", "operations", "Readiness: database, Redis, consumers, scheduler (and the AI's state)",
                  {"200": json_body(ref("Readiness"), "Ready"), "503": json_body(ref("Readiness"), "Not ready")}),
        Operation("GET", "/metrics", metrics_endpoint, "metrics", "operations",
                  "Prometheus metrics (text format); bearer [server].metrics_token if set",
                  {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}, "401"),
        Operation("GET", "/api/v1/openapi.json", openapi, "openapi", "meta", "This document",
                  {"200": json_body({"type": "object"})}),
        Operation("GET", "/api/v1/categories", categories_list, "listCategories", "confessions", "Categories",
                  {"200": json_body(obj({"categories": {"type": "array", "items": obj(
                      {"slug": {"type": "string"}, "name": {"type": "string"}})}}))}),
        Operation("GET", "/api/v1/stats", stats, "getStats", "confessions", "Wall statistics (cached; ETag)",
                  {"200": json_body(ref("Stats")), **NOT_MODIFIED}),
        Operation("POST", "/api/v1/auth/register", register, "register", "accounts", "Create an account",
                  {"201": json_body(AUTH_OK, "Created")}, "400 408 409 413 415 422",
                  body=obj({"username": {"type": "string", "pattern": "^[a-z0-9_]{3,32}$",
                                         "description": "3 to 32 characters of a-z, 0-9 and _"},
                            "password": {"type": "string", "minLength": 8, "maxLength": 1024},
                            "name": {"type": "string", "maxLength": 64, "pattern": NAME_PATTERN,
                                     "description": "no control, bidi or other invisible format characters"},
                            "session": SESSION_FIELD},
                           ["username", "password"])),
        Operation("POST", "/api/v1/auth/login", login, "login", "accounts", "Sign in",
                  {"200": json_body(AUTH_OK)}, "400 401 408 413 415 422 429",
                  body=obj({"username": {"type": "string", "maxLength": 64},
                            "password": {"type": "string", "maxLength": 1024}, "session": SESSION_FIELD},
                           ["username", "password"])),
        Operation("POST", "/api/v1/auth/logout", logout, "logout", "accounts", "Sign out (revokes the token)",
                  {"204": {"description": "Signed out"}}, "401", auth="required", guard=auth.signed_in),
        Operation("GET", "/api/v1/me", me, "getMe", "accounts", "The signed-in user, with their badges",
                  {"200": json_body(obj({"user": ref("User")}))}, "401", auth="required", guard=auth.signed_in),
        Operation("DELETE", "/api/v1/me", delete_me, "deleteMe", "accounts",
                  "Delete the signed-in account and everything about it: sessions, badges, empathies and reports "
                  "it gave, and all its confessions, anonymous ones too", {"204": {"description": "Deleted"}},
                  "400 401 403 408 409 413 415 422 429", auth="required", guard=auth.signed_in,
                  body=obj({"password": {"type": "string", "maxLength": 1024,
                                         "description": "the current password"}})),
        Operation("GET", "/api/v1/me/export", export_me, "exportMyData", "accounts",
                  "Everything the wall keeps about the signed-in user, as a JSON file ([privacy].exports_per_day)",
                  {"200": json_body(ref("Export"))}, "401 429", auth="required", guard=auth.signed_in),
        Operation("GET", "/api/v1/me/confessions", my_confessions, "listMyConfessions", "confessions",
                  "Own confessions, every status, newest first", {"200": json_body(PAGE), **NOT_MODIFIED},
                  "401 422", auth="required", guard=auth.signed_in, query=(LIMIT, CURSOR)),
        Operation("GET", "/api/v1/confessions", feed, "listConfessions", "confessions",
                  "Published confessions, newest first (cached; ETag)", {"200": json_body(PAGE), **NOT_MODIFIED},
                  "401 422", auth="optional", query=(Param("category", category), LIMIT, CURSOR)),
        Operation("POST", "/api/v1/confessions", post_confession, "postConfession", "confessions",
                  "Post a confession (queued for an AI reply)",
                  {"202": json_body(obj({"confession": ref("Confession")}), "Accepted, pending")},
                  "400 401 408 413 415 422 429", auth="required", guard=auth.signed_in,
                  body=obj({"content": {"type": "string", "minLength": limits.content_min, "maxLength": limits.content_max,
                                        "pattern": CONTENT_PATTERN,
                                        "description": f"{limits.content_min} to {limits.content_max} characters; no "
                                                       "space or invisible character at either end; no control, bidi "
                                                       "or other invisible format characters"},
                            "category": category, "anonymous": {"type": "boolean", "default": True}},
                           ["content", "category"])),
        Operation("GET", "/api/v1/confessions/popular", popular, "listPopular", "confessions",
                  "Popular confessions, most empathy first (cached; ETag)",
                  {"200": json_body(obj({"items": {"type": "array", "items": ref("Confession")}})), **NOT_MODIFIED},
                  "401 422", auth="optional", query=(LIMIT,)),
        Operation("GET", f"/api/v1/confessions/{ID}", get_confession, "getConfession", "confessions",
                  "One confession (published, or your own)", {"200": CONFESSION}, "401 404", auth="optional"),
        Operation("DELETE", f"/api/v1/confessions/{ID}", delete_confession, "deleteConfession", "confessions",
                  "Delete (author or admin)", {"204": {"description": "Deleted"}}, "401 403 404", auth="required", guard=auth.signed_in),
        Operation("PUT", f"/api/v1/confessions/{ID}/empathy", empathy_on, "giveEmpathy", "confessions",
                  "Give empathy (idempotent)", {"200": EMPATHY}, "401 404", auth="required", guard=auth.signed_in),
        Operation("DELETE", f"/api/v1/confessions/{ID}/empathy", empathy_off, "takeEmpathyBack", "confessions",
                  "Take empathy back (idempotent)", {"200": EMPATHY}, "401 404", auth="required", guard=auth.signed_in),
        Operation("POST", f"/api/v1/confessions/{ID}/report", report, "reportConfession", "confessions",
                  "Report a published confession (once per user; enough reports hide it)",
                  {"202": json_body(obj({"reported": {"const": True}}), "Accepted")}, "400 401 404 408 413 415 422",
                  auth="required", guard=auth.signed_in, body=obj({"reason": {"type": "string", "maxLength": 500}}, []),
                  body_required=False),
        Operation("GET", "/api/v1/events", events, "streamEvents", "live",
                  "Live updates (Server-Sent Events): published, empathy, removed; Last-Event-ID replays",
                  {"200": {"description": "An event stream (never ends on its own)",
                           "content": {"text/event-stream": {"schema": {"type": "string"}}}}}, "422 429"),
        *admin.operations(config),
    ]


# --- shaping ---


def id_param(request: web.Request) -> int:
    return int(request.match_info["id"])


# --- public ---


async def healthz(request: web.Request, i: Input) -> web.Response:
    return respond({"status": "ok"})


async def readyz(request: web.Request, i: Input) -> web.Response:
    """Ready to serve: the database answers, Redis (if configured) answers, and the parts this
    process runs ([server].roles) run: consumers, the scheduler. 503 otherwise, with what is wrong.
    ``ai`` is said but does not decide: with the AI off or degraded the wall still publishes,
    with fallback replies."""
    wall, scheduler = request.app[WALL], request.app[SCHEDULER]
    roles = wall.config.server.roles
    state: dict[str, object] = {"roles": roles, "db": "ok", "redis": "disabled", "ai": wall.replies.ai.health}
    if "consumers" in roles:
        state["consumers"] = wall.queue.consumers
    if "scheduler" in roles:
        state["scheduler"] = "ok" if scheduler.running else "stopped"
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
    ready = (state["db"] == "ok" and state["redis"] != "down" and state.get("consumers", 1) != 0
             and state.get("scheduler", "ok") == "ok")
    return respond(state, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request, i: Input) -> web.Response:
    wall = request.app[WALL]
    token = wall.config.server.metrics_token
    sent = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")  # any bytes a client sent
    if token and not hmac.compare_digest(sent, f"Bearer {token}".encode()):
        raise Unauthorized("metrics need the metrics token")
    try:
        queue = await wall.queue.stats()
    except Exception:  # noqa: BLE001 - Redis away: the rest of the metrics still matter
        queue = {}
    cache = wall.cache
    body = metrics.render(metrics.DaemonCollector(lambda: queue, lambda: dict(cache.hits), lambda: dict(cache.misses)))
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def openapi(request: web.Request, i: Input) -> web.Response:
    return respond(request.app[OPENAPI])


async def categories_list(request: web.Request, i: Input) -> web.Response:
    return respond({"categories": [{"slug": s, "name": n} for s, n in request.app[WALL].confessions.categories.items()]})


def send(request: web.Request, b: Body) -> web.Response:
    """Cached bytes as they are, with an ETag; 304 when the client has them already."""
    headers = {hdrs.ETAG: b.etag, hdrs.CACHE_CONTROL: "no-cache"}
    if b.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=b.data, content_type="application/json", headers=headers)


async def stats(request: web.Request, i: Input) -> web.Response:
    return send(request, await request.app[WALL].views.stats())


async def feed(request: web.Request, i: Input) -> web.Response:
    viewer = await auth.viewer(request)
    return send(request, await request.app[WALL].views.feed(viewer, i.query.get("category"), i.query["limit"],
                                                            i.query.get("cursor")))


async def popular(request: web.Request, i: Input) -> web.Response:
    viewer = await auth.viewer(request)
    return send(request, await request.app[WALL].views.popular(viewer, i.query["limit"]))


async def get_confession(request: web.Request, i: Input) -> web.Response:
    viewer = await auth.viewer(request)
    c, marked = await request.app[WALL].confessions.get(viewer, id_param(request))
    return respond({"confession": confession_json(c, marked, viewer)})


async def events(request: web.Request, i: Input) -> web.StreamResponse:
    """The wall's live updates; a client reconnecting sends ``Last-Event-ID`` (browsers do)."""
    last = request.headers.get("Last-Event-ID") or None
    if last is not None and not EVENT_ID.fullmatch(last):
        raise Invalid({"Last-Event-ID": "not an event id this API sent"})
    return await sse.send(request, lambda sub: request.app[WALL].live.stream(sub, last))


# --- accounts ---


async def register(request: web.Request, i: Input) -> web.Response:
    token, user = await request.app[WALL].accounts.register(i.body["username"], i.body["password"], i.body.get("name"),
                                                            client.of(request))
    return signed_in_as(request, i, token, user, 201)


async def login(request: web.Request, i: Input) -> web.Response:
    token, user = await request.app[WALL].accounts.login(i.body["username"], i.body["password"], client.of(request))
    return signed_in_as(request, i, token, user, 200)


def signed_in_as(request: web.Request, i: Input, token: str, user: User, status: int) -> web.Response:
    if i.body.get("session") == "cookie":
        response = respond({"user": user_json(user)}, status=status)
        auth.start_session(request, response, token)
        return response
    return respond({"token": token, "user": user_json(user)}, status=status)


async def logout(request: web.Request, i: Input) -> web.Response:
    await auth.signed_in(request)
    await request.app[WALL].accounts.logout(auth.bearer(request) or auth.session(request) or "")
    response = web.Response(status=204)
    auth.end_session(response)
    return response


async def me(request: web.Request, i: Input) -> web.Response:
    user = await auth.signed_in(request)
    return respond({"user": user_json(await request.app[WALL].accounts.profile(user))})


async def delete_me(request: web.Request, i: Input) -> web.Response:
    user = await auth.signed_in(request)
    await request.app[WALL].accounts.delete(user, i.body["password"])
    response = web.Response(status=204)
    auth.end_session(response)  # a page signed in by cookie is signed out too
    return response


async def export_me(request: web.Request, i: Input) -> web.Response:
    user = await auth.signed_in(request)
    me, rows = await request.app[WALL].accounts.export(user)
    response = respond({"exported_at": now(), "user": user_json(me), **rows})
    response.headers["Content-Disposition"] = f'attachment; filename="cwall-export-{user.username}.json"'
    response.headers["Cache-Control"] = "no-store"  # nobody's copy but theirs
    return response


async def my_confessions(request: web.Request, i: Input) -> web.Response:
    user = await auth.signed_in(request)
    return send(request, await request.app[WALL].views.mine(user, i.query["limit"], i.query.get("cursor")))


# --- signed in ---


async def post_confession(request: web.Request, i: Input) -> web.Response:
    user = await auth.signed_in(request)
    c = await request.app[WALL].confessions.post(user, i.body["content"], i.body["category"], i.body.get("anonymous", True))
    return respond({"confession": confession_json(c, False, user)}, status=202)


async def delete_confession(request: web.Request, i: Input) -> web.Response:
    await request.app[WALL].confessions.delete(await auth.signed_in(request), id_param(request))
    return web.Response(status=204)


async def empathy_on(request: web.Request, i: Input) -> web.Response:
    count = await request.app[WALL].confessions.empathy(await auth.signed_in(request), id_param(request), True)
    return respond({"empathy_count": count, "empathized": True})


async def empathy_off(request: web.Request, i: Input) -> web.Response:
    count = await request.app[WALL].confessions.empathy(await auth.signed_in(request), id_param(request), False)
    return respond({"empathy_count": count, "empathized": False})


async def report(request: web.Request, i: Input) -> web.Response:
    user = await auth.signed_in(request)
    await request.app[WALL].confessions.report(user, id_param(request), i.body.get("reason"))
    return respond({"reported": True}, status=202)
