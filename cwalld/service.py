"""Use cases of the confession wall. Knows the ports (storage, queue, AI), not aiohttp or Redis.

Every entrypoint — HTTP handlers, queue consumers, the CLI — calls in here, so the rules live once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace

import argon2
import orjson
import structlog

from cwalld import domain, metrics
from cwalld.ai import AI, AIError, Verdict
from cwalld.cache import Cache
from cwalld.cache.local import LocalCache
from cwalld.config import Config
from cwalld.domain import (
    HIDDEN, PENDING, PUBLISHED, REJECTED, VIRAL_BADGE, Confession, Invalid, NotFound, TooMany, Unauthorized, User,
)
from cwalld.queue import JobQueue
from cwalld.storage import Cursor, Storage

log = structlog.get_logger("cwalld.service")
_hasher = argon2.PasswordHasher()
# Verified against when the username does not exist, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash("not a real password")

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Confession]
    empathized: set[int]
    next_cursor: str | None


class Wall:
    def __init__(self, config: Config, storage: Storage, queue: JobQueue, ai: AI, cache: Cache | None = None) -> None:
        self.config = config
        self.storage = storage
        self.queue = queue
        self.ai = ai
        self.cache = cache or Cache(None, enabled=False)
        self.categories = {c.slug: c.name for c in config.categories}
        self._owner_secret = b""
        self._local_counts = LocalCache()  # login windows when the shared cache is away

    async def open(self) -> None:
        """Load what needs the database (after storage.open)."""
        self._owner_secret = (await self.storage.secret("cache_owner_key")).encode()

    def owner_key(self, user_id: int) -> str:
        """Names a user in cache keys without naming them: a keyed hash, never the user id."""
        return hmac.new(self._owner_secret, str(user_id).encode(), "sha256").hexdigest()[:24]

    async def _changed(self, c: Confession, visible: bool = True) -> None:
        """Invalidate what shows ``c``: its author's list and stats; with ``visible``, the feeds
        (all and its category) and popular too."""
        gens = ["stats", f"mine:{self.owner_key(c.author_id)}"]
        if visible:
            gens += ["feed:all", f"feed:{c.category}", "popular"]
        await self.cache.bump(*gens)

    # --- accounts ---

    async def register(self, username: object, password: object, name: object = None) -> tuple[str, User]:
        username = domain.check_username(username)
        password = domain.check_password(password)
        if name is not None and (not isinstance(name, str) or len(name.strip()) > 64):
            raise Invalid({"name": "a string of at most 64 characters"})
        user = await create_user(self.storage, username, password, name.strip() or None if isinstance(name, str) else None)
        return await self._new_session(user), user

    async def login(self, username: object, password: object) -> tuple[str, User]:
        if not isinstance(username, str) or not isinstance(password, str):
            raise Invalid({"username": "required string", "password": "required string"})
        limit = self.config.auth.login_attempts_per_minute
        key = f"login:{hashlib.sha256(username.encode()).hexdigest()[:32]}"
        count = await self.cache.hit(key, 60)
        if count is None:
            count = await self._local_counts.hit(key, 60)
        if count > limit:
            raise TooMany("rate_limited", "too many login attempts; try again later", 60)
        found = await self.storage.credentials(username)
        ok = await asyncio.to_thread(_verify, found[1] if found else _DUMMY_HASH, password)
        if not (found and ok):
            raise Unauthorized("wrong username or password")
        return await self._new_session(found[0]), found[0]

    async def _new_session(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        await self.storage.create_session(user.id, _token_hash(token), domain.iso_after(self.config.auth.token_ttl_days * DAY))
        return token

    async def authenticate(self, token: str) -> User | None:
        return await self.storage.session_user(_token_hash(token))

    async def logout(self, token: str) -> None:
        await self.storage.delete_session(_token_hash(token))

    # --- confessions ---

    async def post(self, user: User, content: object, category: object, anonymous: object = True) -> Confession:
        limits = self.config.limits
        errors: dict[str, str] = {}
        try:
            text = domain.clean_content(content, limits.content_min, limits.content_max)
        except Invalid as e:
            errors.update(e.fields)
        if category not in self.categories:
            errors["category"] = "one of " + ", ".join(self.categories)
        if not isinstance(anonymous, bool):
            errors["anonymous"] = "must be true or false"
        if errors:
            raise Invalid(errors)
        since = domain.iso_after(-DAY)
        confession = await self.storage.add_confession(
            user.id, text, category, anonymous, limits.daily_confessions, since  # type: ignore[arg-type]
        )
        if confession is None:
            oldest = await self.storage.oldest_since(user.id, since)
            wait = domain.seconds_until(oldest) + DAY if oldest else DAY
            raise TooMany("daily_limit", f"at most {limits.daily_confessions} confessions a day", wait)
        log.info("confession_created", confession_id=confession.id, category=confession.category)
        await self._changed(confession, visible=False)
        # The confession is committed; if queueing fails, the recovery sweep queues it later.
        try:
            await self.queue.enqueue(confession.id)
        except Exception as e:  # noqa: BLE001
            log.warning("enqueue_failed", confession_id=confession.id, error=str(e))
        return _with_author(confession, user)

    async def feed(self, category: str | None, limit: int, cursor: str | None) -> Page:
        """A shared page: the caller's own empathies are overlaid by views, not read here."""
        if category is not None and category not in self.categories:
            raise Invalid({"category": "one of " + ", ".join(self.categories)})
        items = await self.storage.feed(category, limit + 1, decode_cursor(cursor))
        return await self._page(items, limit, lambda c: (c.published_at or "", c.id))

    async def popular(self, limit: int) -> Page:
        return await self._page(await self.storage.popular(limit), limit, None)

    async def mine(self, user: User, limit: int, cursor: str | None) -> Page:
        """The author's own list, without their name on anonymous items (views adds it when
        serving, so a cached page never holds it)."""
        items = await self.storage.by_author(user.id, limit + 1, decode_cursor(cursor))
        return await self._page(items, limit, lambda c: (c.created_at, c.id), user)

    async def profile(self, user: User) -> User:
        """The signed-in user with badges (sessions are looked up without them)."""
        return await self.storage.user(user.id) or user

    async def _page(self, items: list[Confession], limit: int, key, viewer: User | None = None) -> Page:  # type: ignore[no-untyped-def]
        next_cursor = encode_cursor(key(items[limit - 1])) if key and len(items) > limit else None
        items = items[:limit]
        marks = await self.storage.empathized(viewer.id, [c.id for c in items]) if viewer else set()
        return Page(items, marks, next_cursor)

    async def get(self, viewer: User | None, confession_id: int) -> tuple[Confession, bool]:
        c = await self.storage.confession(confession_id)
        mine = c is not None and viewer is not None and c.author_id == viewer.id
        if c is None or c.status == domain.DELETED or (c.status != PUBLISHED and not mine):
            raise NotFound("no such confession")  # hidden and rejected ones too, except to the author
        marked = bool(viewer and await self.storage.empathized(viewer.id, [c.id]))
        return (_with_author(c, viewer) if mine and viewer else c), marked

    async def delete(self, user: User, confession_id: int) -> None:
        c = await self.storage.confession(confession_id)
        mine = c is not None and c.author_id == user.id
        if c is None or c.status == domain.DELETED or not (c.status == PUBLISHED or mine or user.is_admin):
            raise NotFound("no such confession")
        if not (mine or user.is_admin):
            raise domain.Forbidden("only the author or an admin can delete a confession")
        if await self.storage.delete_confession(confession_id):
            await self._changed(c)  # type: ignore[arg-type]
            log.info("confession_deleted", confession_id=confession_id)

    async def empathy(self, user: User, confession_id: int, on: bool) -> int:
        c = await self.storage.set_empathy(user.id, confession_id, on)
        if c is None:
            raise NotFound("no such published confession")
        await self._changed(c)
        return c.empathy_count

    async def stats(self) -> dict[str, object]:
        return await self.storage.stats()

    # --- reports and moderation ---

    async def report(self, user: User, confession_id: int, reason: object = None) -> None:
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise Invalid({"reason": "a string of at most 500 characters"})
        if not await self.storage.add_report(user.id, confession_id, reason.strip() or None if reason else None):
            raise NotFound("no such published confession")
        if await self.storage.hide_if_reported(confession_id, self.config.moderation.auto_hide_reports):
            c = await self.storage.confession(confession_id)
            log.info("confession_hidden", confession_id=confession_id, by="reports")
            if c is not None:
                await self._changed(c)

    async def moderate(self, confession_id: int, hide: bool) -> Confession:
        """An admin hides a published confession, or restores a hidden (or rejected) one."""
        if hide:
            c = await self.storage.set_status(confession_id, (PUBLISHED,), HIDDEN)
        else:
            c = await self.storage.set_status(confession_id, (HIDDEN, REJECTED), PUBLISHED,
                                              fallback_reply=self.ai.fallback(confession_id))
        if c is None:
            raise NotFound("no confession in a state that allows this")
        log.info("confession_hidden" if hide else "confession_restored", confession_id=confession_id, by="admin")
        await self._changed(c)
        return c

    async def by_status(self, status: str | None, limit: int, cursor: str | None) -> Page:
        if status not in (PENDING, REJECTED, HIDDEN):
            raise Invalid({"status": "one of pending, rejected, hidden"})
        items = await self.storage.by_status(status, limit + 1, decode_cursor(cursor))
        return await self._page(items, limit, lambda c: (c.created_at, c.id))

    async def set_admin(self, username: str, on: bool) -> User:
        user = await self.storage.set_admin(username, on)
        if user is None:
            raise NotFound(f"no user {username!r}")
        log.info("admin_granted" if on else "admin_revoked", user_id=user.id)
        return user

    async def clear_cache(self, scope: object) -> str:
        gens = {"feed": ["feed:all", *(f"feed:{c}" for c in self.categories)], "popular": ["popular"],
                "stats": ["stats"], "all": ["global"]}
        if scope not in gens:
            raise Invalid({"scope": "one of feed, popular, stats, all"})
        await self.cache.bump(*gens[scope])  # type: ignore[index]
        return scope  # type: ignore[return-value]

    # --- scheduled jobs ---

    async def popular_job(self) -> dict[str, int]:
        result = await self.storage.mark_popular(self.config.popular.threshold, VIRAL_BADGE)
        await self.clear_cache("feed")
        await self.clear_cache("popular")
        return result

    async def recovery_job(self) -> dict[str, int]:
        return {"queued": await self.requeue_pending(older_than=domain.iso_after(-self.config.queue.sweep_grace))}

    async def queue_clean_job(self) -> dict[str, int]:
        return {"removed": await self.queue.clean(self.config.queue.keep_finished_seconds)}

    async def sessions_purge_job(self) -> dict[str, int]:
        return {"deleted": await self.storage.purge_sessions()}

    async def requeue_pending(self, older_than: str | None = None) -> int:
        """Queue every pending confession (at start: whatever a crash or restart left behind)."""
        queued = 0
        for cid in await self.storage.pending_ids(older_than):
            queued += await self.queue.enqueue(cid)
        if queued:
            log.info("pending_requeued", count=queued)
        return queued

    # --- the AI job (a queue Handler) ---

    async def run(self, confession_id: int) -> None:
        """Moderate, reply, publish. Raises on AI failure so the queue retries."""
        c = await self.storage.confession(confession_id)
        if c is None or c.status != PENDING:
            return
        if not self.ai.enabled:
            await self._publish(c, self.ai.fallback(c.id), fallback=True)
            return
        # Identical text gets the identical outcome: reuse it without calling the API.
        key = "ai:" + hashlib.sha256(" ".join(c.content.split()).encode()).hexdigest()
        cached = await self.cache.get("ai_response", key)
        if cached is not None:
            outcome = orjson.loads(cached)
        else:
            verdict = await self.ai.moderate(c.content)
            if verdict.rejected:
                outcome = {"rejected": verdict.rejected}
            else:
                reply = await self.ai.reply(c.content)
                outcome = {"reply": self.ai.with_crisis(reply) if verdict.crisis else reply}
            await self.cache.put(key, orjson.dumps(outcome), self.config.cache.ai_response_ttl)
        if "rejected" in outcome:
            if await self.storage.finish(c.id, REJECTED, None, False, outcome["rejected"]):
                log.info("confession_rejected", confession_id=c.id)
                metrics.MODERATION_REJECTIONS.inc()
                await self._changed(c)
            return
        await self._publish(c, outcome["reply"], fallback=False)

    async def give_up(self, confession_id: int) -> None:
        """Every attempt failed: publish with a fallback reply (moderation honoured if it answers)."""
        c = await self.storage.confession(confession_id)
        if c is None or c.status != PENDING:
            return
        reply = self.ai.fallback(c.id)
        try:  # half the job's time at most: the fallback must still be stored if the AI is slow
            async with asyncio.timeout(self.config.queue.job_timeout / 2):
                verdict = await self.ai.moderate(c.content)
        except (AIError, TimeoutError):
            verdict = Verdict()  # moderation is down too: publish, as with any AI outage
        if verdict.rejected:
            if await self.storage.finish(c.id, REJECTED, None, False, verdict.rejected):
                metrics.MODERATION_REJECTIONS.inc()
                await self._changed(c)
            return
        await self._publish(c, self.ai.with_crisis(reply) if verdict.crisis else reply, fallback=True)

    async def _publish(self, c: Confession, reply: str, fallback: bool) -> None:
        if await self.storage.finish(c.id, PUBLISHED, reply, fallback, None):
            log.info("confession_published", confession_id=c.id, ai_fallback=fallback)
            if fallback:
                metrics.AI_FALLBACKS.inc()
            await self._changed(c)


async def create_user(storage: Storage, username: str, password: str, name: str | None = None,
                      admin: bool = False) -> User:
    """Shared by registration and the offline ``cwalld user create``."""
    domain.check_username(username)
    domain.check_password(password)
    hashed = await asyncio.to_thread(_hasher.hash, password)
    return await storage.create_user(username, hashed, name, admin)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _with_author(c: Confession, user: User) -> Confession:
    """The author's own view: their name is shown to them even on an anonymous confession."""
    return replace(c, author=user.as_author)


def encode_cursor(key: Cursor) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}|{key[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Cursor | None:
    if cursor is None:
        return None
    try:
        ts, _, ident = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        if len(ts) != 27 or not ident.isdigit():
            raise ValueError
        return ts, int(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid({"cursor": "not a cursor this API returned"}) from None
