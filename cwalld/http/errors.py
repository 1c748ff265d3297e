"""One error shape for every failure: ``{"error": {"code", "message"[, "fields"]}}``.

Domain errors map to their status here; anything unexpected becomes a logged 500 with no trace
sent to the client. Messages follow ``Accept-Language`` (http/messages.py); codes never do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from cwalld.domain import (
    DomainError, Forbidden, Invalid, LastAdmin, NotFound, StorageUnavailable, TooMany, Unauthorized, UsernameTaken,
)
from cwalld.http import messages

log = structlog.get_logger("cwalld.http")

CODES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "username_taken",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
STATUS = {Invalid: 422, NotFound: 404, Forbidden: 403, Unauthorized: 401, UsernameTaken: 409, TooMany: 429,
          StorageUnavailable: 503, LastAdmin: 409}


class ApiError(Exception):
    """An HTTP-level refusal (bad JSON, wrong media type) raised by handlers."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code or CODES[status]


def error_response(status: int, code: str, message: str, lang: str = "en", **extra: object) -> web.Response:
    fields = extra.get("fields")
    if lang == "tr":
        message = messages.turkish(message, code)
        if isinstance(fields, dict):
            fields = {k: messages.turkish(v) for k, v in fields.items()}
            message = "; ".join(f"{k}: {v}" for k, v in fields.items())
    body: dict[str, object] = {"code": code, "message": message}
    headers = {}
    if fields is not None:
        body["fields"] = fields
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    if "allow" in extra:
        headers["Allow"] = str(extra["allow"])
    return web.Response(status=status, body=orjson.dumps({"error": body}), content_type="application/json", headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler``; whatever it raises comes back as the JSON error response."""
    try:
        return await handler(request)
    except web.HTTPRedirection:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes a JSON error, never a trace
        return to_response(request, e)


def to_response(request: web.Request, exc: Exception) -> web.Response:
    """The error response for anything a handler raised (HTTP redirects aside)."""
    lang = messages.language(request.headers.get("Accept-Language"))
    if isinstance(exc, DomainError):
        extra: dict[str, object] = {}
        if isinstance(exc, Invalid):
            extra["fields"] = exc.fields
        if isinstance(exc, (TooMany, StorageUnavailable)):
            extra["retry_after"] = exc.retry_after
        status = next((s for kind, s in STATUS.items() if isinstance(exc, kind)), 400)
        return error_response(status, exc.code, exc.message, lang, **extra)
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, lang)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        extra = {"allow": ", ".join(sorted(exc.allowed_methods))} if isinstance(exc, web.HTTPMethodNotAllowed) else {}
        message = {404: "no such resource", 405: f"{request.method} is not allowed here",
                   413: "request body too large"}.get(exc.status, exc.reason)
        return error_response(exc.status, CODES.get(exc.status, "error"), message, lang, **extra)
    if isinstance(exc, ConnectionError):  # the client went away mid-request
        log.debug("client_disconnected", method=request.method, path=request.path)
        return error_response(400, "client_disconnected", "the connection closed before the request was read", lang)
    log.error("unhandled_error", method=request.method, path=request.path, exc_info=exc)
    return error_response(500, "internal", "internal error", lang)
