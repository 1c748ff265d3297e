"""What each operation accepts, checked at the edge — and published, the same dicts, as OpenAPI.

One source, so the document and the server cannot disagree: an ``Operation`` names its query
parameters and its JSON body as JSON Schema (the subset below), ``parse`` checks a request
against them before the handler runs (a clear 415 / 400 / 413 / 422, never a 500), and
``openapi.document`` publishes the very same objects. A rule no schema can say exactly (a
confession's length counted after cleaning) is checked by the domain and described in the schema.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from cwalld.domain import Invalid
from cwalld.http.errors import ApiError
from cwalld.http.keys import WALL

Schema = dict[str, Any]
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_INTEGER = re.compile(r"[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is true, int("²") fails


@dataclass(frozen=True)
class Param:
    name: str
    schema: Schema
    required: bool = False
    description: str = ""


LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 20})
CURSOR = Param("cursor", {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_.-]+$",
                          "description": "not a cursor this API returned"},
               description="next_cursor of the previous page (opaque and signed)")


@dataclass(frozen=True)
class Input:
    """A request's checked parts: query values (integers parsed) and the JSON body."""

    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[web.Request, Input], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    id: str  # operationId
    tag: str
    summary: str
    ok: dict[str, Any]  # status → response object
    errors: str = ""  # error statuses, space separated (503 is added to every operation)
    auth: str = "none"  # none | optional | required
    query: tuple[Param, ...] = ()
    body: Schema | None = None
    body_required: bool = True
    guard: Callable[[web.Request], Awaitable[object]] | None = None  # who may call: checked first


def check(schema: Schema, value: Any) -> str | None:
    """Why ``value`` does not fit ``schema`` (the subset cwalld uses), or None. As JSON Schema
    says, 135.0 is an integer (``body`` then hands it on as 135)."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return "must be " + " or ".join(_NAMES[k] for k in kinds)
    if "enum" in schema and value not in schema["enum"]:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"at most {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return schema.get("description") or f"must match {schema['pattern']}"
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"at most {schema['maximum']}"
    if isinstance(value, dict) and "properties" in schema:
        for name in schema.get("required", []):
            if name not in value:
                return f"{name} is required"
    return None


_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
          "object": "an object", "array": "an array", "null": "null"}


def parse_query(op: Operation, request: web.Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for p in op.query:
        raw = request.query.get(p.name)
        if raw is None:
            if p.required:
                errors[p.name] = "required"
            elif "default" in p.schema:
                out[p.name] = p.schema["default"]
            continue
        value: Any = raw
        if p.schema.get("type") == "integer":
            if not _INTEGER.fullmatch(raw):
                errors[p.name] = _range(p.schema)
                continue
            value = int(raw)
        problem = check(p.schema, value)
        if problem is not None:
            errors[p.name] = _range(p.schema) if p.schema.get("type") == "integer" else problem
        else:
            out[p.name] = value
    if errors:
        raise Invalid(errors)
    return out


def _range(schema: Schema) -> str:
    return f"an integer from {schema.get('minimum', 0)} to {schema.get('maximum', '…')}"


async def parse_body(op: Operation, request: web.Request) -> dict[str, Any]:
    """The JSON object the operation takes, checked field by field against its schema."""
    assert op.body is not None
    if not request.body_exists and not op.body_required:
        return {}
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    if request.charset not in (None, "utf-8", "utf8"):
        raise ApiError(415, "send the body as UTF-8 JSON (charset=utf-8, or none)")
    try:  # aiohttp raises 413 past client_max_size; a client that stalls mid-body is let go
        async with asyncio.timeout(request.app[WALL].config.server.body_timeout):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(408, "the request body did not arrive in time") from None
    if not raw and not op.body_required:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"body is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(data, dict):
        raise Invalid({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    properties: dict[str, Schema] = op.body.get("properties", {})
    for name in op.body.get("required", []):
        if name not in data:
            errors[name] = "required"
    for name, schema in properties.items():
        if name in data and name not in errors:
            problem = check(schema, data[name])
            if problem is not None:
                errors[name] = problem
    if errors:
        raise Invalid(errors)
    return {name: _plain(properties[name], data[name]) for name in properties if name in data}


def _plain(schema: Schema, value: Any) -> Any:
    return int(value) if schema.get("type") == "integer" and isinstance(value, float) else value


def endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for ``op``: its query and body checked, then its own handler."""
    async def handle(request: web.Request) -> web.StreamResponse:
        if op.guard is not None:  # 401/403 before anything about the request's shape
            await op.guard(request)
        query = parse_query(op, request) if op.query else {}
        body = await parse_body(op, request) if op.body is not None else {}
        return await op.handler(request, Input(query, body))
    return handle


def add(app: web.Application, operations: list[Operation]) -> None:
    for op in operations:
        app.router.add_route(op.method, op.path, endpoint(op))
