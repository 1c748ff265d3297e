"""The OpenAPI 3.1 document, made from the operations the app serves (``schema.Operation``):
the request schemas it publishes are the ones the server checks requests with."""

from __future__ import annotations

from typing import Any

from cwalld import __version__
from cwalld.http.schema import Operation, Schema


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def obj(props: dict[str, Any], required: list[str] | None = None) -> Schema:
    """An object schema; every property is required unless ``required`` says otherwise."""
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


ERRORS = {
    "400": "invalid_json", "401": "unauthorized", "403": "forbidden", "404": "not_found",
    "408": "request_timeout: the body did not arrive within [server].body_timeout",
    "409": "username_taken or last_admin", "413": "payload_too_large", "415": "unsupported_media_type",
    "422": "validation_error (fields says which)", "429": "daily_limit or rate_limited (see Retry-After)",
    "503": "storage_unavailable: the database cannot take writes now, e.g. a full disk (see Retry-After)",
}
TS = {"type": "string", "format": "date-time"}
NULLABLE_TS = {"type": ["string", "null"], "format": "date-time"}
PAGE = obj({"items": {"type": "array", "items": ref("Confession")}, "next_cursor": {"type": ["string", "null"]}})
NOT_MODIFIED = {"304": {"description": "Not modified: the ETag sent in If-None-Match is still current"}}


def operation(op: Operation) -> dict[str, Any]:
    responses = dict(op.ok)
    for status in [*op.errors.split(), "503"]:  # any operation may meet a database that cannot write
        responses[status] = {"$ref": f"#/components/responses/E{status}"}
    out: dict[str, Any] = {"operationId": op.id, "tags": [op.tag], "summary": op.summary, "responses": responses}
    if op.auth == "required":
        out["security"] = [{"bearer": []}]
    elif op.auth == "optional":
        out["security"] = [{}, {"bearer": []}]
    params = [{"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
               **({"description": p.description} if p.description else {})} for p in op.query]
    params += [{"name": name, "in": "path", "required": True, "schema": _PATH[name]}
               for name in _PATH if "{" + name in op.path]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": op.body}}}
    return out


_PATH = {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
         "username": {"type": "string", "pattern": "^[a-z0-9_]{3,32}$"},
         "name": {"enum": ["popular", "recovery", "queue_clean", "sessions_purge"]}}


def document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = op.path.replace(r"{id:\d{1,18}}", "{id}")
        paths.setdefault(path, {})[op.method.lower()] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "cwalld — Confession Wall API", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {f"E{status}": json_body(ref("Error"), f"Error: {code}") for status, code in ERRORS.items()},
            "schemas": SCHEMAS,
        },
    }


SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": obj({
        "code": {"type": "string"},
        "message": {"type": "string", "description": "Turkish when Accept-Language prefers tr to en, else English"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}}}, ["code", "message"])}),
    "Author": obj({"username": {"type": "string"}, "name": {"type": ["string", "null"]},
                   "image": {"type": ["string", "null"]}}),
    "Confession": obj({
        "id": {"type": "integer"}, "content": {"type": "string"}, "category": {"type": "string"},
        "status": {"enum": ["pending", "published", "rejected", "hidden"]},
        "ai_response": {"type": ["string", "null"]}, "ai_fallback": {"type": "boolean"},
        "empathy_count": {"type": "integer"}, "is_popular": {"type": "boolean"},
        "created_at": TS, "published_at": NULLABLE_TS,
        "author": {"oneOf": [{"type": "null"}, ref("Author")],
                   "description": "null when anonymous, except in the author's own view"},
        "empathized": {"type": "boolean"},
        "rejection_reason": {"type": ["string", "null"], "description": "only in the author's own view and to admins"},
        "report_count": {"type": "integer", "minimum": 0, "description": "only to admins"},
    }, ["id", "content", "category", "status", "ai_response", "ai_fallback", "empathy_count", "is_popular",
        "created_at", "published_at", "author", "empathized"]),
    "User": obj({
        "id": {"type": "integer"}, "username": {"type": "string"}, "name": {"type": ["string", "null"]},
        "image": {"type": ["string", "null"]}, "is_admin": {"type": "boolean"},
        "badges": {"type": "array", "items": obj({"code": {"type": "string"}, "name": {"type": "string"},
                                                  "awarded_at": TS})},
        "created_at": TS,
    }),
    "Stats": obj({
        "confessions": obj({k: {"type": "integer"} for k in ("total", "published", "pending", "rejected", "popular")}),
        "empathies": {"type": "integer"}, "users": {"type": "integer"},
        "by_category": {"type": "object", "additionalProperties": {"type": "integer"}},
    }),
    "Export": obj({
        "exported_at": TS, "user": ref("User"),
        "confessions": {"type": "array", "items": obj({
            "id": {"type": "integer"}, "content": {"type": "string"}, "category": {"type": "string"},
            "anonymous": {"type": "boolean"}, "status": {"type": "string"}, "ai_response": {"type": ["string", "null"]},
            "ai_fallback": {"type": "boolean"}, "rejection_reason": {"type": ["string", "null"]},
            "empathy_count": {"type": "integer"}, "is_popular": {"type": "boolean"}, "created_at": TS,
            "published_at": NULLABLE_TS}), "description": "every one they wrote, anonymous ones too"},
        "empathies": {"type": "array", "items": obj({"confession_id": {"type": "integer"}, "created_at": TS})},
        "reports": {"type": "array", "items": obj({"confession_id": {"type": "integer"},
                                                   "reason": {"type": ["string", "null"]}, "created_at": TS})},
        "badges": {"type": "array", "items": obj({"code": {"type": "string"}, "name": {"type": "string"},
                                                  "awarded_at": TS})},
        "sessions": {"type": "array", "items": obj({"created_at": TS, "expires_at": TS}),
                     "description": "when each sign-in began and ends (never the token)"},
    }),
    "Readiness": obj({"roles": {"type": "array", "items": {"enum": ["http", "consumers", "scheduler"]}},
                      "db": {"enum": ["ok", "down", "full", "error", "busy"]},
                      "redis": {"enum": ["ok", "down", "disabled"]},
                      "consumers": {"type": "integer", "description": "only where this process runs consumers"},
                      "scheduler": {"enum": ["ok", "stopped"], "description": "only where it runs the scheduler"},
                      "ai": {"enum": ["ok", "degraded", "disabled"]}}, ["roles", "db", "redis", "ai"]),
    "Job": obj({
        "name": {"type": "string"}, "schedule": {"type": "string"}, "next_run": TS,
        "last_run": {"oneOf": [{"type": "null"}, obj({
            "started_at": TS, "finished_at": NULLABLE_TS,
            "result": {"type": ["object", "null"]}, "error": {"type": ["string", "null"]}})]},
    }),
    "Regeneration": obj({
        "since": {"type": "string", "description": "published since (RFC 3339; empty: all)"},
        "total": {"type": "integer", "minimum": 0}, "done": {"type": "integer", "minimum": 0},
        "dry_run": {"type": "boolean"}, "running": {"type": "boolean"},
        "outcomes": obj({k: {"type": "integer", "minimum": 0} for k in ("replaced", "hidden", "kept", "failed")})}),
    "QueueStats": obj({k: {"type": "integer", "minimum": 0} for k in
                       ("waiting", "active", "delayed", "completed", "fallback", "held", "failed", "total")}),
}
