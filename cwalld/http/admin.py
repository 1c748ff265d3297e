"""Operator handlers: the admin API, and the same handlers behind the Unix control socket.

On the HTTP app they need an admin's token. On the control-socket app (``trusted``) whoever
could open the socket — mode 0600, so the daemon's own user or root — is the operator.
"""

from __future__ import annotations

from aiohttp import web

from cwalld.domain import Invalid
from cwalld.http import auth
from cwalld.http.json import body, limit_param, respond
from cwalld.http.keys import SCHEDULER, TRUSTED, WALL
from cwalld.views import confession_json, user_json

ID = r"{id:\d{1,18}}"
PREFIX = "/api/v1/admin"


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/queue", queue_stats)
    r.add_post(f"{PREFIX}/queue/clean", queue_clean)
    r.add_post(f"{PREFIX}/queue/retry-failed", queue_retry_failed)
    r.add_post(f"{PREFIX}/cache/clear", cache_clear)
    r.add_get(f"{PREFIX}/jobs", jobs)
    r.add_post(f"{PREFIX}/jobs/{{name}}/run", job_run)
    r.add_get(f"{PREFIX}/confessions", confessions)
    r.add_post(f"{PREFIX}/confessions/{ID}/hide", hide)
    r.add_post(f"{PREFIX}/confessions/{ID}/restore", restore)
    r.add_post(f"{PREFIX}/users/{{username}}/admin", grant_admin)
    r.add_delete(f"{PREFIX}/users/{{username}}/admin", revoke_admin)


async def operator(request: web.Request) -> None:
    if not request.app.get(TRUSTED, False):
        await auth.admin(request)


async def queue_stats(request: web.Request) -> web.Response:
    await operator(request)
    return respond(await request.app[WALL].queue.stats())


async def queue_clean(request: web.Request) -> web.Response:
    await operator(request)
    grace = (await body(request)).get("grace_seconds")
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
        raise Invalid({"grace_seconds": "an integer of 0 or more"})
    return respond({"removed": await request.app[WALL].queue.clean(grace)})


async def queue_retry_failed(request: web.Request) -> web.Response:
    await operator(request)
    return respond({"retried": await request.app[WALL].queue.retry_failed()})


async def cache_clear(request: web.Request) -> web.Response:
    await operator(request)
    return respond({"cleared": await request.app[WALL].views.clear((await body(request)).get("scope"))})


async def jobs(request: web.Request) -> web.Response:
    await operator(request)
    return respond({"jobs": await request.app[SCHEDULER].describe()})


async def job_run(request: web.Request) -> web.Response:
    await operator(request)
    return respond({"result": await request.app[SCHEDULER].run_now(request.match_info["name"])})


async def confessions(request: web.Request) -> web.Response:
    await operator(request)
    page = await request.app[WALL].moderation.by_status(request.query.get("status"), limit_param(request),
                                             request.query.get("cursor"))
    return respond({"items": [confession_json(c, False, None) | {"rejection_reason": c.rejection_reason}
                              for c in page.items], "next_cursor": page.next_cursor})


async def hide(request: web.Request) -> web.Response:
    await operator(request)
    c = await request.app[WALL].moderation.hide(int(request.match_info["id"]))
    return respond({"confession": confession_json(c, False, None)})


async def restore(request: web.Request) -> web.Response:
    await operator(request)
    c = await request.app[WALL].moderation.restore(int(request.match_info["id"]))
    return respond({"confession": confession_json(c, False, None)})


async def grant_admin(request: web.Request) -> web.Response:
    await operator(request)
    return respond({"user": user_json(await request.app[WALL].accounts.set_admin(request.match_info["username"], True))})


async def revoke_admin(request: web.Request) -> web.Response:
    await operator(request)
    return respond({"user": user_json(await request.app[WALL].accounts.set_admin(request.match_info["username"], False))})
