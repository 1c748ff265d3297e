"""Operator handlers: the admin API, and the same handlers behind the Unix control socket.

On the HTTP app they need an admin's token. On the control-socket app (``trusted``) whoever
could open the socket — mode 0600, so the daemon's own user or root — is the operator.
Answers about another user carry no badges: a badge's date can name an anonymous author.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cwalld.config import Config
from cwalld.domain import User
from cwalld.http import auth, sse
from cwalld.http.json import respond
from cwalld.http.keys import SCHEDULER, TRUSTED, WALL
from cwalld.http.openapi import PAGE, json_body, obj, ref
from cwalld.http.schema import CURSOR, LIMIT, Handler, Input, Operation, Param
from cwalld.views import confession_json

ID = r"{id:\d{1,18}}"
PREFIX = "/api/v1/admin"
SCOPE = {"type": "string", "enum": ["feed", "popular", "stats", "all"]}
COUNT = {"type": "integer", "minimum": 0}
CONFESSION = json_body(obj({"confession": ref("Confession")}))
SINCE = "^([0-9]{1,6}[smhd]|all)$"
REGENERATION = json_body(obj({"regeneration": {"oneOf": [{"type": "null"}, ref("Regeneration")]}}))
ADMIN_USER = json_body(obj({"user": obj({"id": {"type": "integer"}, "username": {"type": "string"},
                                         "is_admin": {"type": "boolean"}})}))


def operations(config: Config) -> list[Operation]:
    def op(method: str, path: str, handler: Handler, op_id: str, summary: str, ok: dict[str, Any],
           errors: str = "", **kw: Any) -> Operation:
        return Operation(method, PREFIX + path, handler, op_id, "admin", summary, ok,
                         " ".join(["401 403", errors]).strip(), auth="required", guard=operator, **kw)

    return [
        op("GET", "/queue", queue_stats, "getQueueStats", "AI job queue counts", {"200": json_body(ref("QueueStats"))}),
        op("GET", "/events", queue_events, "streamAdminEvents",
           "Live queue counts (Server-Sent Events): `queue` when they change, at most once a second",
           {"200": {"description": "An event stream (never ends on its own)",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}, "429"),
        op("POST", "/queue/clean", queue_clean, "cleanQueue", "Forget finished job records older than grace_seconds",
           {"200": json_body(obj({"removed": COUNT}))}, "400 408 413 415 422",
           body=obj({"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 10**9}})),
        op("POST", "/queue/retry-failed", queue_retry_failed, "retryFailedJobs", "Queue every failed job again",
           {"200": json_body(obj({"retried": COUNT}))}),
        op("POST", "/cache/clear", cache_clear, "clearCache", "Drop cached entries of a scope",
           {"200": json_body(obj({"cleared": SCOPE}))}, "400 408 413 415 422", body=obj({"scope": SCOPE})),
        op("GET", "/jobs", jobs, "listJobs", "Scheduled jobs, their next and last runs",
           {"200": json_body(obj({"jobs": {"type": "array", "items": ref("Job")}}))}),
        op("POST", "/jobs/{name}/run", job_run, "runJob", "Run a job now",
           {"200": json_body(obj({"result": {"type": "object"}}))}, "404"),
        op("GET", "/confessions", confessions, "listConfessionsByStatus", "Confessions by status, newest first",
           {"200": json_body(PAGE)}, "422",
           query=(Param("status", {"type": "string", "enum": ["pending", "rejected", "hidden", "reported"],
                                   "description": "reported: published, with at least one report"}, required=True),
                  LIMIT, CURSOR)),
        op("POST", f"/confessions/{ID}/hide", decision("hide"), "hideConfession", "Hide a published confession",
           {"200": CONFESSION}, "404"),
        op("POST", f"/confessions/{ID}/restore", decision("restore"), "restoreConfession",
           "Publish a hidden or rejected confession again", {"200": CONFESSION}, "404"),
        op("POST", f"/confessions/{ID}/publish", decision("publish"), "publishConfession",
           "Publish a pending confession now, with the fallback reply", {"200": CONFESSION}, "404"),
        op("POST", f"/confessions/{ID}/reject", decision("reject"), "rejectConfession",
           "Reject a pending confession now", {"200": CONFESSION}, "404"),
        op("POST", "/ai/regenerate", regenerate, "regenerateFallbackReplies",
           "Ask the AI again for the fallback replies published since a time (low priority, rate-bounded)",
           {"202": REGENERATION}, "400 408 413 415 422",
           body=obj({"since": {"type": "string", "pattern": SINCE, "default": "7d",
                               "description": "how far back: a number and s, m, h or d, or all"},
                     "dry_run": {"type": "boolean", "default": False, "description": "only count them"}}, [])),
        op("GET", "/ai/regenerate", regeneration, "getRegeneration", "The last regeneration run's progress",
           {"200": REGENERATION}),
        op("DELETE", "/users/{username}", delete_user, "deleteUser",
           "Delete an account and everything about it, as DELETE /me does", {"204": {"description": "Deleted"}},
           "404 409"),
        op("POST", "/users/{username}/admin", grant_admin, "grantAdmin", "Make a user an admin", {"200": ADMIN_USER}, "404"),
        op("DELETE", "/users/{username}/admin", revoke_admin, "revokeAdmin", "Revoke a user's admin rights",
           {"200": ADMIN_USER}, "404 409"),
    ]


async def operator(request: web.Request) -> None:
    if not request.app.get(TRUSTED, False):
        await auth.admin(request)


def admin_json(u: User) -> dict[str, object]:
    return {"id": u.id, "username": u.username, "is_admin": u.is_admin}


async def queue_stats(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond(await request.app[WALL].queue.stats())


async def queue_events(request: web.Request, i: Input) -> web.StreamResponse:
    """The console's live counts. Read, not told: one ``stats()`` a second per open stream,
    which ``[events].max_per_client`` bounds and only admins can open."""
    await operator(request)
    wall = request.app[WALL]
    return await sse.send(request, lambda sub: wall.live.watch(sub, "queue", wall.queue.stats))


async def queue_clean(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"removed": await request.app[WALL].queue.clean(i.body["grace_seconds"])})


async def queue_retry_failed(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"retried": await request.app[WALL].queue.retry_failed()})


async def cache_clear(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"cleared": await request.app[WALL].views.clear(i.body["scope"])})


async def jobs(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"jobs": await request.app[SCHEDULER].describe()})


async def job_run(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"result": await request.app[SCHEDULER].run_now(request.match_info["name"])})


async def confessions(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    moderation = request.app[WALL].moderation
    page = await moderation.by_status(i.query["status"], i.query["limit"], i.query.get("cursor"))
    reports = await moderation.report_counts(page)
    return respond({"items": [confession_json(c, False, None) | {"rejection_reason": c.rejection_reason,
                                                                 "report_count": reports.get(c.id, 0)}
                              for c in page.items], "next_cursor": page.next_cursor})


def decision(name: str) -> Handler:
    """The handler of an admin's decision on one confession: ``moderation.<name>(id)``."""
    async def decide(request: web.Request, i: Input) -> web.Response:
        await operator(request)
        c = await getattr(request.app[WALL].moderation, name)(int(request.match_info["id"]))
        return respond({"confession": confession_json(c, False, None)})
    return decide


async def regenerate(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    since = i.body.get("since", "7d")
    seconds = None if since == "all" else int(since[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[since[-1]]
    progress = await request.app[WALL].regenerate.start(seconds, i.body.get("dry_run", False))
    return respond({"regeneration": progress.as_json()}, status=202)


async def regeneration(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    last = request.app[WALL].regenerate.last
    return respond({"regeneration": last.as_json() if last else None})


async def delete_user(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    accounts = request.app[WALL].accounts
    await accounts.remove(await accounts.user_id(request.match_info["username"]))
    return web.Response(status=204)


async def grant_admin(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"user": admin_json(await request.app[WALL].accounts.set_admin(request.match_info["username"], True))})


async def revoke_admin(request: web.Request, i: Input) -> web.Response:
    await operator(request)
    return respond({"user": admin_json(await request.app[WALL].accounts.set_admin(request.match_info["username"], False))})
