"""PostgreSQL storage: the source of truth when several machines serve one wall.

The same port as ``storage.sqlite`` and the same schema, column for column (migrations/postgres,
numbered like SQLite's). What SQLite gets from its single writer, PostgreSQL gets from row locks,
each where a rule must be exact across processes and machines:

- the daily limit: the author's row is locked (``FOR NO KEY UPDATE``) before the count, so a
  second post by the same author waits for the first to commit and then counts it (one call of
  a SQL function: one round trip);
- the last admin: a transaction-scoped advisory lock orders every revoke and account deletion;
- empathy counts: the trigger's ``UPDATE`` of the confession's row, as in SQLite;
- a scheduled tick: the ``UNIQUE (name, scheduled_for)`` upsert, as in SQLite.

A lost or refused connection, a full disk or an exhausted pool reaches callers as
``StorageUnavailable`` (503 with Retry-After at the edge) and sets ``health`` until an
operation succeeds again; the pool replaces broken connections by itself. Reads are tried once
more on a fresh connection first: a connection the server dropped while idle costs nobody a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from cwalld import metrics
from cwalld.config import Config
from cwalld.domain import (
    PENDING, PUBLISHED, Badge, Confession, LastAdmin, StorageUnavailable, User, UsernameTaken, iso_after, now,
)
from cwalld.storage import Cursor, Removed, rows

log = structlog.get_logger("cwalld.storage")

T = TypeVar("T")
Conn = asyncpg.Connection | PoolConnectionProxy  # a connection of its own, or one lent by the pool

_C, _FROM, _U = rows.CONFESSION, rows.FROM, rows.USER
_ONE = f"SELECT {_C} {_FROM} WHERE c.id = $1"
_confession, _user = rows.confession, rows.user

MIGRATE_LOCK = 0x63_77_61_6C_6C_64  # "cwalld": two processes starting together migrate once
ADMINS_LOCK = MIGRATE_LOCK + 1  # orders every change that could leave the wall without an admin
TIMEOUT = 10.0  # seconds for a connection from the pool, or a statement, before answering 503

# Errors that mean "the database cannot take this now", not "this request is wrong", by kind.
_UNAVAILABLE: tuple[tuple[type[BaseException], str], ...] = (
    (asyncpg.DiskFullError, "full"),
    (asyncpg.TooManyConnectionsError, "busy"),
    (TimeoutError, "busy"),
    (asyncpg.PostgresConnectionError, "unreachable"),
    (asyncpg.OperatorInterventionError, "unreachable"),  # shutdown, terminated, starting up
    (asyncpg.InterfaceError, "unreachable"),  # the connection closed under us
    (OSError, "unreachable"),
    (asyncpg.InsufficientResourcesError, "error"),
    (asyncpg.ReadOnlySQLTransactionError, "error"),  # a standby, or default_transaction_read_only
)


def unavailable(error: BaseException) -> str | None:
    for kind, name in _UNAVAILABLE:
        if isinstance(error, kind):
            return name
    return None


def migrations() -> list[tuple[int, Any]]:
    """``(version, file)`` for each migrations/postgres/NNNN_*.sql, in order: the same numbers
    as SQLite's, each the same change of the schema."""
    folder = resources.files("cwalld.storage").joinpath("migrations", "postgres")
    files = (f for f in folder.iterdir() if f.name.endswith(".sql"))
    return sorted(((int(f.name.split("_", 1)[0]), f) for f in files), key=lambda vf: vf[0])


async def migrate(c: Conn) -> bool:
    """Apply each migration once, in order, each in its own transaction, under an advisory lock
    (a second process waits, then finds them applied). True if the database had no schema."""
    await c.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
    try:
        new = await c.fetchval("SELECT to_regclass('schema_migrations') IS NULL")
        await c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at text NOT NULL)")
        applied = {r[0] for r in await c.fetch("SELECT version FROM schema_migrations")}
        for version, f in migrations():
            if version in applied:
                continue
            async with c.transaction():
                await c.execute(f.read_text(encoding="utf-8"))
                await c.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, now())
        return bool(new)
    finally:
        await c.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)


async def inspect(url: str) -> str | None:
    """The database's schema, said for ``cwalld check`` without changing anything; None when it
    has no tables yet."""
    c = await asyncpg.connect(url, timeout=TIMEOUT)
    try:
        if await c.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
            return None
        applied = {r[0] for r in await c.fetch("SELECT version FROM schema_migrations")}
    finally:
        await c.close()
    todo = [v for v, _ in migrations() if v not in applied]
    return f"schema {max(applied, default=0)}" + (f"; {len(todo)} migrations to apply at the next start" if todo else "")


class PostgresStorage:
    def __init__(self, url: str, pool_size: int = 10, slow_query_ms: float = 100.0, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.pool_size = pool_size
        self._slow_query_ms = slow_query_ms
        self._pool: asyncpg.Pool | None = None
        self.created = False
        self.health = "ok"  # ok | unreachable | full | busy | error: what the last failure said

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size, reset=_kept,
                                               timeout=self.timeout, command_timeout=self.timeout)
        try:
            async with self._pool.acquire() as c:
                self.created = await migrate(c)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:  # a connection still out (a request cut short) must not hold up the stop
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    def reconfigure(self, config: Config) -> None:
        self._slow_query_ms = config.log.slow_query_ms

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "storage not open"
        return self._pool

    # --- the one way in: a pooled connection, errors sorted, slow operations logged ---

    @contextlib.asynccontextmanager
    async def _conn(self, label: str, transaction: bool = False, write: bool = True) -> AsyncIterator[Conn]:
        try:
            async with self.pool.acquire(timeout=self.timeout) as c:
                started = time.perf_counter()  # the statements' time, not the wait for a connection
                if transaction:
                    async with c.transaction():
                        yield c
                else:
                    yield c
        except Exception as e:
            kind = unavailable(e)
            if kind is None:
                raise
            if self.health == "ok":
                log.warning("storage_unavailable", connection="postgresql", kind=kind, error=str(e) or type(e).__name__)
                metrics.STORAGE_UNAVAILABLE.inc()
            self.health = kind
            raise StorageUnavailable(f"the database cannot take this now ({kind})") from None
        if self.health != "ok" and (write or self.health in ("unreachable", "busy")):  # reads work on a full disk
            self.health = "ok"
            log.info("storage_available", connection="postgresql")
        ms = (time.perf_counter() - started) * 1000
        if ms >= self._slow_query_ms > 0:
            metrics.SLOW_QUERIES.inc()
            log.warning("slow_query", query=label, ms=round(ms, 1))

    async def _read(self, label: str, op: Callable[[Conn], Awaitable[T]]) -> T:
        """A read, tried once more if its connection turned out dead (the pool makes a new one)."""
        for attempt in (1, 2):
            try:
                async with self._conn(label, write=False) as c:
                    return await op(c)
            except StorageUnavailable:
                if attempt == 2 or self.health != "unreachable":
                    raise
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._read(sql, lambda c: c.fetch(sql, *args))

    async def _write(self, sql: str, *args: Any) -> str:
        """One statement; its status (``UPDATE 1``)."""
        async with self._conn(sql) as c:
            return str(await c.execute(sql, *args))

    async def _write_rows(self, sql: str, *args: Any) -> list[Any]:
        async with self._conn(sql) as c:
            return list(await c.fetch(sql, *args))

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def backup(self, target: str) -> dict[str, object]:
        """PostgreSQL's own tools do this better (pg_dump, base backups): ``cwalld backup`` says so."""
        raise NotImplementedError("a PostgreSQL wall is backed up with pg_dump (README: Backups)")

    async def secret(self, name: str) -> str:
        rows = await self._write_rows(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = meta.value"
            " RETURNING value", name, secrets.token_hex(32))
        return str(rows[0][0])

    # --- users and sessions ---

    async def create_user(self, username: str, password_hash: str, name: str | None, is_admin: bool) -> User:
        try:
            rows = await self._write_rows(
                "INSERT INTO users (username, password_hash, name, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)"
                " RETURNING id, username, name, image, is_admin, created_at",
                username, password_hash, name, int(is_admin), now())
        except asyncpg.UniqueViolationError:
            raise UsernameTaken(f"username {username!r} is taken") from None
        return _user(rows[0])

    async def credentials(self, username: str) -> tuple[User, str] | None:
        rows = await self._fetch(f"SELECT {_U}, u.password_hash FROM users u WHERE u.username = $1", username)
        return (await self._with_badges(rows[0]), rows[0][6]) if rows else None

    async def user(self, user_id: int) -> User | None:
        rows = await self._fetch(f"SELECT {_U} FROM users u WHERE u.id = $1", user_id)
        return await self._with_badges(rows[0]) if rows else None

    async def _with_badges(self, row: Any) -> User:
        badges = await self._fetch("SELECT code, name, awarded_at FROM badges WHERE user_id = $1 ORDER BY awarded_at", row[0])
        return _user(row, [Badge(*b) for b in badges])

    async def create_session(self, user_id: int, token_hash: str, expires_at: str) -> None:
        await self._write("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                          token_hash, user_id, now(), expires_at)

    async def session_user(self, token_hash: str) -> User | None:
        rows = await self._fetch(
            f"SELECT {_U} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
            token_hash, now())
        return _user(rows[0]) if rows else None

    async def delete_session(self, token_hash: str) -> None:
        await self._write("DELETE FROM sessions WHERE token_hash = $1", token_hash)

    async def purge_sessions(self) -> int:
        return _count(await self._write("DELETE FROM sessions WHERE expires_at <= $1", now()))

    async def set_password(self, username: str, password_hash: str) -> bool:
        """A new password signs the user out everywhere: every session of theirs is deleted."""
        async with self._conn("set_password", transaction=True) as c:
            user_id = await c.fetchval("UPDATE users SET password_hash = $1 WHERE username = $2 RETURNING id",
                                       password_hash, username)
            if user_id is not None:
                await c.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
            return user_id is not None

    async def set_admin(self, username: str, on: bool) -> User | None:
        async with self._conn("set_admin", transaction=True) as c:
            await c.execute("SELECT pg_advisory_xact_lock($1)", ADMINS_LOCK)
            status = await c.execute(
                "UPDATE users SET is_admin = $1 WHERE username = $2"
                " AND ($3 OR is_admin = 0 OR (SELECT count(*) FROM users WHERE is_admin = 1) > 1)",
                int(on), username, on)
            exists = _count(status) == 1 or await c.fetchval("SELECT 1 FROM users WHERE username = $1", username)
        if _count(status) != 1:
            if exists:
                raise LastAdmin("the wall must keep at least one admin")
            return None
        found = await self.credentials(username)
        return found[0] if found else None

    # --- confessions ---

    async def add_confession(
        self, author_id: int, content: str, category: str, anonymous: bool, daily_limit: int, since: str
    ) -> Confession | None:
        created_at = now()
        async with self._conn("add_confession") as c:  # one call: lock, count, insert (migrations/postgres/0001)
            made = await c.fetchval("SELECT add_confession($1, $2, $3, $4, $5, $6, $7)",
                                    author_id, content, category, int(anonymous), created_at, since, daily_limit)
        if made is None:
            return None
        return Confession(id=made, content=content, category=category, status=PENDING, ai_response=None,
                          ai_fallback=False, empathy_count=0, is_popular=False, created_at=created_at,
                          published_at=None, anonymous=anonymous, author_id=author_id, rejection_reason=None)

    async def oldest_since(self, author_id: int, since: str) -> str | None:
        rows = await self._fetch("SELECT min(created_at) FROM confessions WHERE author_id = $1 AND created_at > $2",
                                 author_id, since)
        return rows[0][0] if rows else None

    async def confession(self, confession_id: int) -> Confession | None:
        rows = await self._fetch(_ONE, confession_id)
        return _confession(rows[0]) if rows else None

    async def feed(self, category: str | None, limit: int, after: Cursor | None) -> list[Confession]:
        where, args = ["c.status = 'published'"], list[object]()
        if category is not None:
            args.append(category)
            where.append(f"c.category = ${len(args)}")
        if after is not None:
            args += [*after]
            where.append(f"(c.published_at, c.id) < (${len(args) - 1}, ${len(args)})")
        sql = (f"SELECT {_C} {_FROM} WHERE {' AND '.join(where)}"
               f" ORDER BY c.published_at DESC, c.id DESC LIMIT ${len(args) + 1}")
        return [_confession(r) for r in await self._fetch(sql, *args, limit)]

    async def popular(self, limit: int, published_since: str) -> list[Confession]:
        sql = (f"SELECT {_C} {_FROM} WHERE c.status = 'published' AND c.is_popular = 1 AND c.published_at >= $1"
               " ORDER BY c.empathy_count DESC, c.id DESC LIMIT $2")
        return [_confession(r) for r in await self._fetch(sql, published_since, limit)]

    async def by_author(self, author_id: int, limit: int, after: Cursor | None) -> list[Confession]:
        where, args = ["c.author_id = $1", "c.status != 'deleted'"], list[object]([author_id])
        if after is not None:
            args += [*after]
            where.append("(c.created_at, c.id) < ($2, $3)")
        sql = (f"SELECT {_C} {_FROM} WHERE {' AND '.join(where)}"
               f" ORDER BY c.created_at DESC, c.id DESC LIMIT ${len(args) + 1}")
        return [_confession(r) for r in await self._fetch(sql, *args, limit)]

    async def by_status(self, status: str, limit: int, after: Cursor | None) -> list[Confession]:
        assert status in ("pending", "rejected", "hidden", "reported"), status
        if status == "reported":
            where = ["c.status = 'published'", "c.id IN (SELECT confession_id FROM reports)"]
        else:
            where = [f"c.status = '{status}'"]
        args: list[Any] = []
        if after is not None:
            args += list(after)
            where.append("(c.created_at, c.id) < ($1, $2)")
        sql = (f"SELECT {_C} {_FROM} WHERE {' AND '.join(where)}"
               f" ORDER BY c.created_at DESC, c.id DESC LIMIT ${len(args) + 1}")
        return [_confession(r) for r in await self._fetch(sql, *args, limit)]

    async def report_counts(self, confession_ids: list[int]) -> dict[int, int]:
        if not confession_ids:
            return {}
        rows = await self._fetch("SELECT confession_id, count(*) FROM reports WHERE confession_id = ANY($1::bigint[])"
                                 " GROUP BY confession_id", confession_ids)
        return {r[0]: r[1] for r in rows}

    async def delete_confession(self, confession_id: int) -> bool:
        """The row stays (its id is in others' empathies and reports, and in the queue); what was
        written and answered goes: taking a confession back erases it."""
        return _count(await self._write(
            "UPDATE confessions SET status = 'deleted', content = '', ai_response = NULL, rejection_reason = NULL"
            " WHERE id = $1 AND status != 'deleted'", confession_id)) == 1

    async def finish(
        self, confession_id: int, status: str, ai_response: str | None, ai_fallback: bool, rejection_reason: str | None
    ) -> bool:
        published_at = now() if status == PUBLISHED else None
        return _count(await self._write(
            "UPDATE confessions SET status = $1, ai_response = $2, ai_fallback = $3, rejection_reason = $4,"
            " published_at = $5 WHERE id = $6 AND status = $7",
            status, ai_response, int(ai_fallback), rejection_reason, published_at, confession_id, PENDING)) == 1

    async def pending_ids(self, older_than: str | None = None) -> list[int]:
        rows = await self._fetch(
            "SELECT id FROM confessions WHERE status = 'pending' AND created_at < $1"
            " AND (retry_at IS NULL OR retry_at <= $2) ORDER BY created_at", older_than or "9999", now())
        return [r[0] for r in rows]

    async def fallback_ids(self, published_since: str) -> list[int]:
        rows = await self._fetch(
            "SELECT id FROM confessions WHERE status = 'published' AND ai_fallback = 1 AND published_at >= $1"
            " ORDER BY published_at DESC, id DESC", published_since)
        return [r[0] for r in rows]

    async def replace_fallback(self, confession_id: int, reply: str) -> bool:
        return _count(await self._write(
            "UPDATE confessions SET ai_response = $1, ai_fallback = 0"
            " WHERE id = $2 AND status = 'published' AND ai_fallback = 1", reply, confession_id)) == 1

    async def hold(self, confession_id: int, first: float, cap: float) -> str | None:
        async with self._conn("hold", transaction=True) as c:
            holds = await c.fetchval("SELECT holds FROM confessions WHERE id = $1 AND status = 'pending' FOR UPDATE",
                                     confession_id)
            if holds is None:
                return None
            at = iso_after(min(cap, first * 2 ** min(holds, 30)))
            await c.execute("UPDATE confessions SET holds = holds + 1, retry_at = $1 WHERE id = $2", at, confession_id)
            return at

    async def set_status(self, confession_id: int, from_statuses: tuple[str, ...], to: str,
                         fallback_reply: str | None = None) -> Confession | None:
        async with self._conn("set_status", transaction=True) as c:
            status = await c.execute(
                "UPDATE confessions SET status = $1, published_at = coalesce(published_at, $2),"
                " ai_fallback = CASE WHEN ai_response IS NULL THEN 1 ELSE ai_fallback END,"
                " ai_response = coalesce(ai_response, $3)"
                " WHERE id = $4 AND status = ANY($5::text[])",
                to, now(), fallback_reply, confession_id, list(from_statuses))
            if _count(status) != 1:
                return None
            if to == PUBLISHED:  # an admin decided: earlier reports no longer count toward hiding it
                await c.execute("DELETE FROM reports WHERE confession_id = $1", confession_id)
            row = await c.fetchrow(_ONE, confession_id)
        return _confession(row) if row else None

    # --- empathy and reports ---

    async def set_empathy(self, user_id: int, confession_id: int, on: bool) -> Confession | None:
        async with self._conn("set_empathy", transaction=True) as c:
            if on:
                await c.execute(
                    "INSERT INTO empathies (confession_id, user_id, created_at)"
                    " SELECT id, $1, $2 FROM confessions WHERE id = $3 AND status = 'published'"
                    " ON CONFLICT DO NOTHING", user_id, now(), confession_id)
            else:
                await c.execute(
                    "DELETE FROM empathies WHERE confession_id = $1 AND user_id = $2"
                    " AND EXISTS (SELECT 1 FROM confessions WHERE id = $1 AND status = 'published')",
                    confession_id, user_id)
            row = await c.fetchrow(_ONE, confession_id)
        found = _confession(row) if row else None
        return found if found is not None and found.status == PUBLISHED else None

    async def empathized(self, user_id: int, confession_ids: list[int]) -> set[int]:
        if not confession_ids:
            return set()
        rows = await self._fetch("SELECT confession_id FROM empathies WHERE user_id = $1 AND confession_id = ANY($2::bigint[])",
                                 user_id, confession_ids)
        return {r[0] for r in rows}

    async def add_report(self, user_id: int, confession_id: int, reason: str | None) -> bool:
        async with self._conn("add_report", transaction=True) as c:
            await c.execute(
                "INSERT INTO reports (confession_id, user_id, reason, created_at)"
                " SELECT id, $1, $2, $3 FROM confessions WHERE id = $4 AND status = 'published' ON CONFLICT DO NOTHING",
                user_id, reason, now(), confession_id)
            status = await c.fetchval("SELECT status FROM confessions WHERE id = $1", confession_id)
        return bool(status == PUBLISHED)

    async def hide_if_reported(self, confession_id: int, threshold: int, accounts_before: str) -> bool:
        # Each report commits before its own call here, so the call after the last report sees them all.
        return _count(await self._write(
            "UPDATE confessions SET status = 'hidden' WHERE id = $1 AND status = 'published'"
            " AND (SELECT count(*) FROM reports r JOIN users u ON u.id = r.user_id WHERE r.confession_id = $1"
            "      AND u.created_at <= $2 AND r.user_id IS DISTINCT FROM confessions.author_id) >= $3",
            confession_id, accounts_before, threshold)) == 1

    # --- accounts' data ---

    async def delete_user(self, user_id: int, detach: bool = False) -> Removed | None:
        """The account and every row about it, in one transaction (see ``storage.sqlite``)."""
        async with self._conn("delete_user", transaction=True) as c:
            await c.execute("SELECT pg_advisory_xact_lock($1)", ADMINS_LOCK)
            is_admin = await c.fetchval("SELECT is_admin FROM users WHERE id = $1 FOR UPDATE", user_id)
            if is_admin is None:
                return None
            if is_admin and await c.fetchval("SELECT count(*) FROM users WHERE is_admin = 1") == 1:
                raise LastAdmin("the wall must keep at least one admin")
            confessions = await c.fetch("SELECT id, category, status FROM confessions WHERE author_id = $1", user_id)
            empathized = await c.fetch(
                "SELECT c.id, c.category FROM empathies e JOIN confessions c ON c.id = e.confession_id"
                " WHERE e.user_id = $1 AND c.author_id IS DISTINCT FROM $1", user_id)
            own = "SELECT id FROM confessions WHERE author_id = $1"
            mine = (("UPDATE confessions SET author_id = NULL, anonymous = 1 WHERE author_id = $1",) if detach else
                    (f"DELETE FROM empathies WHERE confession_id IN ({own})",
                     f"DELETE FROM reports WHERE confession_id IN ({own})", "DELETE FROM confessions WHERE author_id = $1"))
            for sql in ("DELETE FROM sessions WHERE user_id = $1", "DELETE FROM badges WHERE user_id = $1",
                        "DELETE FROM reports WHERE user_id = $1", "DELETE FROM empathies WHERE user_id = $1",
                        *mine, "DELETE FROM users WHERE id = $1"):
                await c.execute(sql, user_id)
        return Removed([tuple(r) for r in confessions], [tuple(r) for r in empathized])

    async def export(self, user_id: int) -> dict[str, list[dict[str, object]]]:
        """Every row about ``user_id``, read in one snapshot (see ``storage.sqlite``)."""
        queries = {
            "confessions": "SELECT id, content, category, anonymous, status, ai_response, ai_fallback, rejection_reason,"
                           " empathy_count, is_popular, created_at, published_at FROM confessions WHERE author_id = $1"
                           " ORDER BY created_at, id",
            "empathies": "SELECT confession_id, created_at FROM empathies WHERE user_id = $1 ORDER BY created_at",
            "reports": "SELECT confession_id, reason, created_at FROM reports WHERE user_id = $1 ORDER BY created_at",
            "badges": "SELECT code, name, awarded_at FROM badges WHERE user_id = $1 ORDER BY awarded_at",
            "sessions": "SELECT created_at, expires_at FROM sessions WHERE user_id = $1 ORDER BY created_at",
        }
        out: dict[str, list[dict[str, object]]] = {}
        async with self._conn("export", write=False) as c:
            async with c.transaction(isolation="repeatable_read", readonly=True):
                for name, sql in queries.items():
                    out[name] = [dict(r) for r in await c.fetch(sql, user_id)]
        for confession in out["confessions"]:
            for flag in ("anonymous", "ai_fallback", "is_popular"):
                confession[flag] = bool(confession[flag])
        return out

    # --- scheduled jobs ---

    async def mark_popular(self, threshold: int, badge: tuple[str, str], accounts_before: str) -> dict[str, int]:
        async with self._conn("mark_popular", transaction=True) as c:
            popular = _count(await c.execute(
                "UPDATE confessions SET is_popular = 1"
                " WHERE status = 'published' AND is_popular = 0 AND empathy_count >= $1"
                " AND (SELECT count(*) FROM empathies e JOIN users u ON u.id = e.user_id WHERE e.confession_id = confessions.id"
                "      AND u.created_at <= $2 AND e.user_id IS DISTINCT FROM confessions.author_id) >= $1",
                threshold, accounts_before))
            awarded = _count(await c.execute(
                "INSERT INTO badges (user_id, code, name, awarded_at)"
                " SELECT DISTINCT author_id, $1, $2, $3 FROM confessions"
                " WHERE status = 'published' AND is_popular = 1 AND author_id IS NOT NULL"
                " ON CONFLICT DO NOTHING", *badge, now()))
        return {"newly_popular": popular, "badges_awarded": awarded}

    async def claim_run(self, name: str, scheduled_for: str, claim_timeout: float) -> int | None:
        rows = await self._write_rows(
            "INSERT INTO job_runs (name, scheduled_for, started_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (name, scheduled_for) DO UPDATE SET started_at = excluded.started_at, error = NULL"
            " WHERE job_runs.finished_at IS NULL AND job_runs.started_at < $4"
            " RETURNING id", name, scheduled_for, now(), iso_after(-claim_timeout))
        return rows[0][0] if rows else None

    async def release_run(self, run_id: int) -> None:
        await self._write("DELETE FROM job_runs WHERE id = $1 AND finished_at IS NULL", run_id)

    async def finish_run(self, run_id: int, result: str | None, error: str | None) -> None:
        async with self._conn("finish_run", transaction=True) as c:
            await c.execute("UPDATE job_runs SET finished_at = $1, result = $2, error = $3 WHERE id = $4",
                            now(), result, error, run_id)
            await c.execute("DELETE FROM job_runs WHERE started_at < $1", iso_after(-7 * 86400))

    async def last_run(self, name: str) -> dict[str, str | None] | None:
        rows = await self._fetch(
            "SELECT scheduled_for, started_at, finished_at, result, error FROM job_runs WHERE name = $1"
            " ORDER BY started_at DESC LIMIT 1", name)
        return dict(rows[0]) if rows else None

    async def stats(self) -> dict[str, object]:
        by_status = {s: 0 for s in ("pending", "published", "rejected")}
        popular = 0
        for status, n, pop in await self._fetch(
                "SELECT status, count(*), sum(is_popular) FROM confessions GROUP BY status"):
            if status in by_status:
                by_status[status] = n
            if status == PUBLISHED:
                popular = int(pop or 0)
        empathies = (await self._fetch(
            "SELECT count(*) FROM empathies e JOIN confessions c ON c.id = e.confession_id WHERE c.status = 'published'"
        ))[0][0]
        users = (await self._fetch("SELECT count(*) FROM users"))[0][0]
        by_category = {r[0]: r[1] for r in await self._fetch(
            "SELECT category, count(*) FROM confessions WHERE status = 'published' GROUP BY category")}
        return {
            "confessions": {"total": sum(by_status.values()), **by_status, "popular": popular},
            "empathies": empathies,
            "users": users,
            "by_category": by_category,
        }


async def _kept(_: Conn) -> None:
    """A connection goes back to the pool as it is: nothing here changes a session's state (no
    SET, LISTEN or session advisory lock outlives its call), so asyncpg's reset query — a round
    trip on every release — would only cost time. An open transaction is still rolled back."""


def _count(status: str) -> int:
    """The row count of a command's status (``UPDATE 3``, ``INSERT 0 2``, ``DELETE 1``)."""
    return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0
