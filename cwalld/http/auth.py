"""Bearer tokens: who is calling. Tokens are looked up by hash; they are never logged."""

from __future__ import annotations

import re

from aiohttp import web

from cwalld.domain import Forbidden, Unauthorized, User
from cwalld.http.keys import USER, WALL


TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")  # what secrets.token_urlsafe makes; anything else is no token


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not TOKEN.fullmatch(token.strip()):
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    return token.strip()


async def viewer(request: web.Request) -> User | None:
    """The signed-in user, None for a guest; a token that is sent must be valid."""
    if USER not in request:
        token = bearer(request)
        user: User | None = None
        if token is not None:
            user = await request.app[WALL].accounts.authenticate(token)
            if user is None:
                raise Unauthorized("token is invalid or expired")
        request[USER] = user
    return request[USER]


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
