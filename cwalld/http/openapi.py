"""The OpenAPI 3.1 document of the HTTP API. A test checks it lists exactly the routes served."""

from __future__ import annotations

from functools import cache
from typing import Any

from cwalld import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required is not None:
        out["required"] = required
    return out


_ERRORS = {
    "400": "invalid_json", "401": "unauthorized", "403": "forbidden", "404": "not_found",
    "409": "username_taken", "413": "payload_too_large", "415": "unsupported_media_type",
    "422": "validation_error", "429": "daily_limit or rate_limited (see Retry-After)",
    "503": "storage_unavailable: the database cannot take writes now, e.g. a full disk (see Retry-After)",
}


def _op(summary: str, ok: dict[str, Any], errors: str = "", *, auth: str = "none",
        body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    responses = dict(ok)
    for status in [*errors.split(), "503"]:  # any operation may meet a database that cannot write
        responses[status] = {"$ref": f"#/components/responses/E{status}"}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if auth == "required":
        op["security"] = [{"bearer": []}]
    elif auth == "optional":
        op["security"] = [{}, {"bearer": []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}}
_CURSOR = {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_PAGE = _obj({"items": {"type": "array", "items": _ref("Confession")}, "next_cursor": {"type": ["string", "null"]}})
_AUTH_OK = _obj({"token": {"type": "string"}, "user": _ref("User")})
_INT = {"type": "integer", "minimum": 0}
_SCOPE = {"enum": ["feed", "popular", "stats", "all"]}
_USERNAME = {"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}
_NOT_MODIFIED = {"304": {"description": "Not modified: the ETag sent in If-None-Match is still current"}}
_EMPATHY = _json(_obj({"empathy_count": {"type": "integer"}, "empathized": {"type": "boolean"}}))


@cache
def document() -> dict[str, Any]:
    ts = {"type": "string", "format": "date-time"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "cwalld — Confession Wall API", "version": __version__},
        "paths": {
            "/healthz": {"get": _op("Liveness", {"200": _json(_obj({"status": {"const": "ok"}}))})},
            "/readyz": {"get": _op("Readiness: database, Redis, consumers, scheduler", {
                "200": _json(_ref("Readiness"), "Ready"), "503": _json(_ref("Readiness"), "Not ready")})},
            "/metrics": {"get": _op("Prometheus metrics (text format); bearer [server].metrics_token if set", {
                "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}, "401")},
            "/api/v1/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})})},
            "/api/v1/categories": {"get": _op("Categories", {"200": _json(_obj(
                {"categories": {"type": "array", "items": _obj({"slug": {"type": "string"}, "name": {"type": "string"}})}}))})},
            "/api/v1/stats": {"get": _op("Wall statistics (cached; ETag)", {"200": _json(_ref("Stats")), **_NOT_MODIFIED})},
            "/api/v1/auth/register": {"post": _op(
                "Create an account", {"201": _json(_AUTH_OK, "Created")}, "400 409 413 415 422",
                body=_obj({"username": {"type": "string", "pattern": "^[a-z0-9_]{3,32}$"},
                           "password": {"type": "string", "minLength": 8}, "name": {"type": "string"}},
                          ["username", "password"]))},
            "/api/v1/auth/login": {"post": _op(
                "Sign in", {"200": _json(_AUTH_OK)}, "400 401 413 415 422 429",
                body=_obj({"username": {"type": "string"}, "password": {"type": "string"}}, ["username", "password"]))},
            "/api/v1/auth/logout": {"post": _op("Sign out (revokes the token)", {"204": {"description": "Signed out"}},
                                                "401", auth="required")},
            "/api/v1/me": {"get": _op("The signed-in user", {"200": _json(_obj({"user": _ref("User")}))}, "401",
                                      auth="required")},
            "/api/v1/me/confessions": {"get": _op(
                "Own confessions, every status, newest first (cached; ETag)", {"200": _json(_PAGE), **_NOT_MODIFIED},
                "401 422",
                auth="required", params=[_LIMIT, _CURSOR])},
            "/api/v1/confessions": {
                "get": _op("Published confessions, newest first (cached; ETag)", {"200": _json(_PAGE), **_NOT_MODIFIED},
                           "401 422", auth="optional",
                           params=[{"name": "category", "in": "query", "schema": {"type": "string"}}, _LIMIT, _CURSOR]),
                "post": _op("Post a confession (queued for an AI reply)",
                            {"202": _json(_obj({"confession": _ref("Confession")}), "Accepted, pending")},
                            "400 401 413 415 422 429", auth="required",
                            body=_obj({"content": {"type": "string"}, "category": {"type": "string"},
                                       "anonymous": {"type": "boolean", "default": True}}, ["content", "category"])),
            },
            "/api/v1/confessions/popular": {"get": _op(
                "Popular confessions, most empathy first (cached; ETag)",
                {"200": _json(_obj({"items": {"type": "array", "items": _ref("Confession")}})), **_NOT_MODIFIED},
                "401 422",
                auth="optional", params=[_LIMIT])},
            "/api/v1/confessions/{id}": {
                "get": _op("One confession (published, or your own)",
                           {"200": _json(_obj({"confession": _ref("Confession")}))}, "401 404",
                           auth="optional", params=[_ID]),
                "delete": _op("Delete (author or admin)", {"204": {"description": "Deleted"}}, "401 403 404",
                              auth="required", params=[_ID]),
            },
            "/api/v1/confessions/{id}/empathy": {
                "put": _op("Give empathy (idempotent)", {"200": _EMPATHY}, "401 404", auth="required", params=[_ID]),
                "delete": _op("Take empathy back (idempotent)", {"200": _EMPATHY}, "401 404", auth="required",
                              params=[_ID]),
            },
            "/api/v1/confessions/{id}/report": {"post": _op(
                "Report a published confession (once per user; enough reports hide it)",
                {"202": _json(_obj({"reported": {"const": True}}), "Accepted")}, "400 401 404 415 422",
                auth="required", params=[_ID], body=_obj({"reason": {"type": "string", "maxLength": 500}}))},
            "/api/v1/admin/queue": {"get": _op("AI job queue counts", {"200": _json(_ref("QueueStats"))}, "401 403",
                                               auth="required")},
            "/api/v1/admin/queue/clean": {"post": _op(
                "Forget finished job records older than grace_seconds", {"200": _json(_obj({"removed": _INT}))},
                "400 401 403 415 422", auth="required", body=_obj({"grace_seconds": _INT}, ["grace_seconds"]))},
            "/api/v1/admin/queue/retry-failed": {"post": _op(
                "Queue every failed job again", {"200": _json(_obj({"retried": _INT}))}, "401 403", auth="required")},
            "/api/v1/admin/cache/clear": {"post": _op(
                "Drop cached entries of a scope", {"200": _json(_obj({"cleared": _SCOPE}))}, "400 401 403 415 422",
                auth="required", body=_obj({"scope": _SCOPE}, ["scope"]))},
            "/api/v1/admin/jobs": {"get": _op("Scheduled jobs, their next and last runs",
                                              {"200": _json(_obj({"jobs": {"type": "array", "items": _ref("Job")}}))},
                                              "401 403", auth="required")},
            "/api/v1/admin/jobs/{name}/run": {"post": _op(
                "Run a job now", {"200": _json(_obj({"result": {"type": "object"}}))}, "401 403 404", auth="required",
                params=[{"name": "name", "in": "path", "required": True,
                         "schema": {"enum": ["popular", "recovery", "queue_clean", "sessions_purge"]}}])},
            "/api/v1/admin/confessions": {"get": _op(
                "Confessions by status, newest first", {"200": _json(_PAGE)}, "401 403 422", auth="required",
                params=[{"name": "status", "in": "query", "required": True,
                         "schema": {"enum": ["pending", "rejected", "hidden"]}}, _LIMIT, _CURSOR])},
            "/api/v1/admin/confessions/{id}/hide": {"post": _op(
                "Hide a published confession", {"200": _json(_obj({"confession": _ref("Confession")}))},
                "401 403 404", auth="required", params=[_ID])},
            "/api/v1/admin/confessions/{id}/restore": {"post": _op(
                "Publish a hidden or rejected confession again", {"200": _json(_obj({"confession": _ref("Confession")}))},
                "401 403 404", auth="required", params=[_ID])},
            "/api/v1/admin/users/{username}/admin": {
                "post": _op("Make a user an admin", {"200": _json(_obj({"user": _ref("User")}))}, "401 403 404",
                            auth="required", params=[_USERNAME]),
                "delete": _op("Revoke a user's admin rights", {"200": _json(_obj({"user": _ref("User")}))},
                              "401 403 404", auth="required", params=[_USERNAME]),
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                f"E{status}": _json(_ref("Error"), f"Error: {code}") for status, code in _ERRORS.items()
            },
            "schemas": {
                "Error": _obj({"error": _obj({
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"}}}, ["code", "message"])},
                    ["error"]),
                "Author": _obj({"username": {"type": "string"}, "name": {"type": ["string", "null"]},
                                "image": {"type": ["string", "null"]}}),
                "Confession": _obj({
                    "id": {"type": "integer"}, "content": {"type": "string"}, "category": {"type": "string"},
                    "status": {"enum": ["pending", "published", "rejected", "hidden"]},
                    "ai_response": {"type": ["string", "null"]}, "ai_fallback": {"type": "boolean"},
                    "empathy_count": {"type": "integer"}, "is_popular": {"type": "boolean"},
                    "created_at": ts, "published_at": {"type": ["string", "null"], "format": "date-time"},
                    "author": {"oneOf": [{"type": "null"}, _ref("Author")],
                               "description": "null when anonymous, except in the author's own view"},
                    "empathized": {"type": "boolean"},
                    "rejection_reason": {"type": ["string", "null"], "description": "only in the author's own view"},
                }),
                "User": _obj({
                    "id": {"type": "integer"}, "username": {"type": "string"}, "name": {"type": ["string", "null"]},
                    "image": {"type": ["string", "null"]}, "is_admin": {"type": "boolean"},
                    "badges": {"type": "array", "items": _obj({"code": {"type": "string"}, "name": {"type": "string"},
                                                               "awarded_at": ts})},
                    "created_at": ts,
                }),
                "Stats": _obj({
                    "confessions": _obj({k: {"type": "integer"} for k in
                                         ("total", "published", "pending", "rejected", "popular")}),
                    "empathies": {"type": "integer"}, "users": {"type": "integer"},
                    "by_category": {"type": "object", "additionalProperties": {"type": "integer"}},
                }),
                "Readiness": _obj({"db": {"enum": ["ok", "down", "full", "error", "busy"]}, "redis": {"enum": ["ok", "down", "disabled"]},
                                   "consumers": {"type": "integer"}, "scheduler": {"enum": ["ok", "stopped"]}}),
                "Job": _obj({
                    "name": {"type": "string"}, "schedule": {"type": "string"}, "next_run": ts,
                    "last_run": {"oneOf": [{"type": "null"}, _obj({
                        "started_at": ts, "finished_at": {"type": ["string", "null"]},
                        "result": {"type": ["object", "null"]}, "error": {"type": ["string", "null"]}})]},
                }),
                "QueueStats": _obj({k: {"type": "integer"} for k in
                                    ("waiting", "active", "completed", "failed", "delayed", "total")}),
            },
        },
    }
