"""Who is calling: a Bearer token (API clients) or the page's session cookie. Tokens are looked
up by hash; they are never logged.

The page signs in with ``"session": "cookie"``: the token goes into an HttpOnly cookie that its
scripts cannot read (SameSite=Lax; Secure over TLS, ours or a trusted proxy's), beside a CSRF
cookie they can. A write signed in by the cookie must echo that CSRF value in ``X-CSRF-Token``
and, when the browser says where it comes from, have our own Origin: a page elsewhere can make
the browser send the cookies but can read neither.
"""

from __future__ import annotations

import hmac
import re
import secrets

from aiohttp import web

from cwalld.domain import Forbidden, Unauthorized, User
from cwalld.http import client
from cwalld.http.keys import USER, WALL


TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")  # what secrets.token_urlsafe makes; anything else is no token
SESSION, CSRF = "cwall_session", "cwall_csrf"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not TOKEN.fullmatch(token.strip()):
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    return token.strip()


def session(request: web.Request) -> str | None:
    """The session cookie's token, if it looks like one."""
    token = request.cookies.get(SESSION, "")
    return token if TOKEN.fullmatch(token) else None


async def viewer(request: web.Request) -> User | None:
    """The signed-in user, None for a guest. A Bearer token that is sent must be valid; a stale
    session cookie is a guest (the page then signs in again)."""
    if USER not in request:
        token = bearer(request)
        user: User | None = None
        if token is not None:
            user = await request.app[WALL].accounts.authenticate(token)
            if user is None:
                raise Unauthorized("token is invalid or expired")
        elif (cookie := session(request)) is not None:
            user = await request.app[WALL].accounts.authenticate(cookie)
            if user is not None and request.method not in SAFE:
                same_site(request)
        request[USER] = user
    return request[USER]


def same_site(request: web.Request) -> None:
    """A write signed in by the cookie comes from our own page (see the module doc)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != own_origin(request):
        raise Forbidden("a signed-in write from another site is refused")
    sent, expected = request.headers.get("X-CSRF-Token", ""), request.cookies.get(CSRF, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("send the cwall_csrf cookie's value in X-CSRF-Token")


def _nets(request: web.Request) -> list[client.Network]:
    return client.networks(request.app[WALL].config.server.trusted_proxies)


def own_origin(request: web.Request) -> str:
    return f"{'https' if client.https(request, _nets(request)) else 'http'}://{request.host}"


def start_session(request: web.Request, response: web.Response, token: str) -> None:
    """The page's sign-in: the token in an HttpOnly cookie, a fresh CSRF value beside it."""
    max_age = request.app[WALL].config.auth.token_ttl_days * 86400
    secure = client.https(request, _nets(request))
    response.set_cookie(SESSION, token, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=secure)
    response.set_cookie(CSRF, secrets.token_urlsafe(24), max_age=max_age, path="/", samesite="Lax", secure=secure)


def end_session(response: web.Response) -> None:
    for name in (SESSION, CSRF):
        response.del_cookie(name, path="/")


async def signed_in(request: web.Request) -> User:
    user = await viewer(request)
    if user is None:
        raise Unauthorized("sign in first")
    return user


async def admin(request: web.Request) -> User:
    user = await signed_in(request)
    if not user.is_admin:
        raise Forbidden("admins only")
    return user
