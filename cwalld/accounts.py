"""Accounts: register, sign in and out, sessions, admin rights.

Passwords are hashed with argon2 off the event loop; a login for a name that does not exist
verifies against a dummy hash, so it takes as long as one that does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from typing import Protocol

import argon2
import structlog

from cwalld import domain
from cwalld.config import Config
from cwalld.domain import Forbidden, Invalid, NotFound, TooMany, Unauthorized, User
from cwalld.events import Event, Events
from cwalld.storage import Storage

log = structlog.get_logger("cwalld.accounts")
_hasher = argon2.PasswordHasher()
# Verified against when the username does not exist, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash("not a real password")

DAY = 86400.0


class HitCounter(Protocol):
    async def hit(self, key: str, ttl: float) -> int:
        """One more hit in a window of ``ttl`` seconds opened by the first; the count so far."""


class Accounts:
    def __init__(self, config: Config, storage: Storage, events: Events, attempts: HitCounter) -> None:
        self.config, self.storage, self.events, self.attempts = config, storage, events, attempts
        self.counter_key = b""  # set by Wall.open from the database

    def client_window(self, seconds: float) -> float:
        """A counter keyed by a client address lives at most ``[privacy].client_data_hours``."""
        return min(seconds, self.config.privacy.client_data_hours * 3600)

    def counter(self, kind: str, *parts: str) -> str:
        """A counter's key: an HMAC under a key kept in the database, so whoever reads Redis
        cannot test which usernames (or addresses) tried to sign in."""
        digest = hmac.new(self.counter_key, "\x00".join(parts).encode("utf-8", "surrogateescape"), "sha256")
        return f"{kind}:{digest.hexdigest()[:32]}"

    async def register(self, username: object, password: object, name: object = None,
                       client: str = "") -> tuple[str, User]:
        if await self.attempts.hit(self.counter("register", client), self.client_window(3600)) > self.config.auth.registrations_per_hour:
            raise TooMany("rate_limited", "too many new accounts from here; try again later", 3600)
        username = domain.check_username(username)
        password = domain.check_password(password)
        user = await create_user(self.storage, username, password, None if name is None else domain.check_name(name))
        await self.events.emit(Event("user_registered"))
        return await self._new_session(user), user

    async def login(self, username: object, password: object, client: str = "") -> tuple[str, User]:
        """Limited per (client, username) — so nobody can lock a victim out from elsewhere —
        and per client, so one client cannot try many names."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise Invalid({"username": "required string", "password": "required string"})
        auth = self.config.auth
        window = self.client_window(60)
        if (await self.attempts.hit(self.counter("login", client, username), window) > auth.login_attempts_per_minute
                or await self.attempts.hit(self.counter("login_client", client), window) > auth.login_attempts_per_client_minute):
            raise TooMany("rate_limited", "too many login attempts; try again later", 60)
        found = await self.storage.credentials(username)
        ok = await asyncio.to_thread(_verify, found[1] if found else _DUMMY_HASH, password)
        if not (found and ok):
            raise Unauthorized("wrong username or password")
        return await self._new_session(found[0]), found[0]

    async def _new_session(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        await self.storage.create_session(user.id, token_hash(token), domain.iso_after(self.config.auth.token_ttl_days * DAY))
        return token

    async def authenticate(self, token: str) -> User | None:
        return await self.storage.session_user(token_hash(token))

    async def logout(self, token: str) -> None:
        await self.storage.delete_session(token_hash(token))

    async def profile(self, user: User) -> User:
        """The signed-in user with badges (sessions are looked up without them)."""
        return await self.storage.user(user.id) or user

    async def delete(self, user: User, password: object) -> None:
        """A person leaving: their current password (a stolen token alone cannot do it, and its
        guesses are limited like logins), then ``remove``."""
        if not isinstance(password, str):
            raise Invalid({"password": "required string"})
        if await self.attempts.hit(self.counter("delete", str(user.id)), 60) > self.config.auth.login_attempts_per_minute:
            raise TooMany("rate_limited", "too many login attempts; try again later", 60)
        found = await self.storage.credentials(user.username)
        if found is None or not await asyncio.to_thread(_verify, found[1], password):
            raise Forbidden("wrong password")
        await self.remove(user.id)

    async def user_id(self, username: str) -> int:
        found = await self.storage.credentials(username)
        if found is None:
            raise NotFound(f"no user {username!r}")
        return found[0].id

    async def remove(self, user_id: int) -> None:
        """The account and everything about it, at once (``storage.delete_user``); then the
        caches and live updates follow each confession it took away. The log says how many,
        never which: no line ties the account to its confessions."""
        detach = self.config.privacy.detach
        removed = await self.storage.delete_user(user_id, detach)
        if removed is None:
            raise NotFound("no such user")
        log.info("account_deleted", user_id=user_id, confessions=len(removed.confessions),
                 empathies=len(removed.empathized), kept=detach)
        for cid, category, status in removed.confessions:
            if not detach:
                await self.events.emit(Event("confession_deleted", cid, category))
            elif status == "published":  # on the wall still, its name gone from it
                await self.events.emit(Event("confession_detached", cid, category))
        for cid, category in removed.empathized:
            await self.events.emit(Event("empathy_removed", cid, category))
        await self.events.emit(Event("account_deleted"))

    async def export(self, user: User) -> tuple[User, dict[str, list[dict[str, object]]]]:
        """Everything the wall keeps about ``user`` (their right of access under KVKK and the
        GDPR): profile and badges, every confession they wrote (anonymous ones too: they are the
        author), the empathies they gave, the reports they filed, their sessions. At most
        ``[privacy].exports_per_day`` a day: each reads all of their rows."""
        per_day = self.config.privacy.exports_per_day
        if await self.attempts.hit(self.counter("export", str(user.id)), DAY) > per_day:
            raise TooMany("rate_limited", f"at most {per_day} exports a day", int(DAY))
        me = await self.profile(user)
        rows = await self.storage.export(user.id)
        log.info("data_exported", user_id=user.id)
        return me, rows

    async def set_admin(self, username: str, on: bool) -> User:
        user = await self.storage.set_admin(username, on)
        if user is None:
            raise NotFound(f"no user {username!r}")
        log.info("admin_granted" if on else "admin_revoked", user_id=user.id)
        await self.events.emit(Event("admin_granted" if on else "admin_revoked"))
        return user


async def create_user(storage: Storage, username: str, password: str, name: str | None = None,
                      admin: bool = False) -> User:
    """Shared by registration and the offline ``cwalld user create``."""
    domain.check_username(username)
    domain.check_password(password)
    hashed = await asyncio.to_thread(_hasher.hash, password)
    return await storage.create_user(username, hashed, name, admin)


async def set_password(storage: Storage, username: str, password: str) -> bool:
    """The offline ``cwalld user password``: False if there is no such user."""
    domain.check_password(password)
    return await storage.set_password(username, await asyncio.to_thread(_hasher.hash, password))


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
