"""SQLite storage: the source of truth.

Two connections, each owned by a thread (``storage.thread``): the writer, committing in groups,
and a reader beside it (WAL lets readers run while the writer writes). Writes that must be exact
are single statements — the daily limit is an ``INSERT … SELECT`` guarded by a count, empathy
counters move by trigger — and a write of several statements runs as one atomic step in the
writer thread, so they stay exact across coroutines and across processes sharing the file,
without an application lock.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cwalld.config import Config
from cwalld.domain import (
    PENDING, PUBLISHED, Badge, Confession, LastAdmin, User, UsernameTaken, iso_after, now,
)
from cwalld.storage import Cursor, Removed, rows
from cwalld.storage.thread import SQLiteThread


_C, _FROM, _U = rows.CONFESSION, rows.FROM, rows.USER
_ONE = f"SELECT {_C} {_FROM} WHERE c.id = ?"
_confession, _user = rows.confession, rows.user


def _migrations() -> list[tuple[int, Any]]:
    """``(version, file)`` for each migrations/NNNN_*.sql, in order."""
    files = (f for f in resources.files("cwalld.storage").joinpath("migrations").iterdir() if f.name.endswith(".sql"))
    return sorted(((int(f.name.split("_", 1)[0]), f) for f in files), key=lambda vf: vf[0])


REBUILD = "-- cwalld: rebuilds a table"  # a migration's first line, when it does


def _migrate(c: sqlite3.Connection) -> None:
    """Apply each migrations/NNNN_*.sql once, in order, each in its own transaction.

    A migration that rebuilds a table (SQLite cannot change a column's constraints in place)
    says so on its first line and runs SQLite's documented way: foreign keys off and the legacy
    rename (so triggers that name the table are not checked while it is briefly missing), then
    ``foreign_key_check`` must find nothing before the COMMIT."""
    c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for version, f in _migrations():
        if c.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
            continue
        script = f.read_text(encoding="utf-8")
        rebuild = script.startswith(REBUILD)
        if rebuild:
            c.execute("PRAGMA foreign_keys = OFF")
            c.execute("PRAGMA legacy_alter_table = ON")
        try:
            # executescript runs the whole file; BEGIN IMMEDIATE makes a second process wait
            # and then fail on the version's primary key instead of applying it twice.
            c.executescript(f"BEGIN IMMEDIATE;\n{script}\n;INSERT INTO schema_migrations VALUES ({version}, '{now()}');")
            broken = c.execute("PRAGMA foreign_key_check").fetchall() if rebuild else []  # else enforced as it ran
            if broken:
                raise sqlite3.IntegrityError(f"migration {version} breaks foreign keys: {broken[:3]}")
            c.execute("COMMIT")
        except sqlite3.Error:
            if c.in_transaction:
                c.execute("ROLLBACK")
            if not c.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                raise
        finally:
            if rebuild:
                c.execute("PRAGMA legacy_alter_table = OFF")
                c.execute("PRAGMA foreign_keys = ON")


def inspect(path: str) -> str | None:
    """The database's schema, said for ``cwalld check`` without creating or changing a file;
    None when there is no database yet. A read-only open of a WAL database leaves -wal and -shm
    files behind, so with none beside it (no daemon has it open) the file is read immutable."""
    db = Path(path)
    if not db.exists():
        return None
    live = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    c = sqlite3.connect(f"file:{quote(str(db.resolve()))}?{'mode=ro' if live else 'immutable=1'}", uri=True)
    try:
        applied = {v for (v,) in c.execute("SELECT version FROM schema_migrations")}
    except sqlite3.OperationalError as e:
        raise sqlite3.DatabaseError(f"not a cwalld database ({e})") from None
    finally:
        c.close()
    todo = [v for v, _ in _migrations() if v not in applied]
    return f"schema {max(applied, default=0)}" + (f"; {len(todo)} migrations to apply at the next start" if todo else "")


def private(db: Path) -> bool:
    """Create the database's folder (0700) and file (0600) if they are new (True if the file
    is): they hold password hashes and who wrote what. SQLite gives its -wal and -shm files the
    database's mode."""
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if db.exists():
        return False
    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    return True


def _one(c: sqlite3.Connection, confession_id: int) -> Confession | None:
    row = c.execute(_ONE, (confession_id,)).fetchone()
    return _confession(row) if row else None


class SQLiteStorage:
    def __init__(self, path: str, synchronous: str = "FULL", slow_query_ms: float = 100.0) -> None:
        self.path = path
        self.synchronous = synchronous
        self._slow_query_ms = slow_query_ms
        self._w: SQLiteThread | None = None
        self._r: SQLiteThread | None = None
        self.created = False

    async def open(self) -> None:
        self.created = self.path == ":memory:" or private(Path(self.path))
        pragmas = ["journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", f"synchronous={self.synchronous}"]
        self._w = SQLiteThread(self.path, pragmas, self._slow_query_ms, grouped=True, name="sqlite-writer")
        try:
            await self._w.open()
            await self._w.run(_migrate, alone=True)
            self._r = SQLiteThread(self.path, pragmas, self._slow_query_ms, name="sqlite-reader")
            await self._r.open()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for db in (self._r, self._w):
            if db is not None:
                await db.close()
        self._r = self._w = None

    def reconfigure(self, config: Config) -> None:
        """A reload: the slow-query threshold reaches both connections' threads."""
        self._slow_query_ms = config.log.slow_query_ms
        for db in (self._w, self._r):
            if db is not None:
                db.slow_query_ms = config.log.slow_query_ms

    @property
    def health(self) -> str:
        """``ok``, or why writes fail now (``full``, ``error``, ``busy``); ``ok`` again after a
        write succeeds."""
        for db in (self._w, self._r):
            if db is not None and db.health != "ok":
                return db.health
        return "ok"

    @property
    def w(self) -> SQLiteThread:
        assert self._w is not None, "storage not open"
        return self._w

    @property
    def r(self) -> SQLiteThread:
        assert self._r is not None, "storage not open"
        return self._r

    async def ping(self) -> None:
        await self.r.fetch("SELECT 1")

    async def backup(self, target: str) -> dict[str, object]:
        """An online copy (storage/backup.py), on a thread and connection of its own: the
        writer and the reader go on serving meanwhile."""
        from cwalld.storage import backup

        made: dict[str, object] = await asyncio.to_thread(backup.copy, self.path, target)
        return made

    async def secret(self, name: str) -> str:
        """A random value made once per database and shared by every process using it."""
        done = await self.w.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value = value RETURNING value",
            (name, secrets.token_hex(32)))
        return str(done.rows[0][0])

    # --- users and sessions ---

    async def create_user(self, username: str, password_hash: str, name: str | None, is_admin: bool) -> User:
        try:
            done = await self.w.execute(
                "INSERT INTO users (username, password_hash, name, is_admin, created_at) VALUES (?, ?, ?, ?, ?)"
                " RETURNING id, username, name, image, is_admin, created_at",
                (username, password_hash, name, int(is_admin), now()),
            )
        except sqlite3.IntegrityError:
            raise UsernameTaken(f"username {username!r} is taken") from None
        return _user(done.rows[0])

    async def credentials(self, username: str) -> tuple[User, str] | None:
        rows = list(await self.r.fetch(f"SELECT {_U}, u.password_hash FROM users u WHERE u.username = ?", (username,)))
        return (await self._with_badges(rows[0]), rows[0][6]) if rows else None

    async def user(self, user_id: int) -> User | None:
        rows = list(await self.r.fetch(f"SELECT {_U} FROM users u WHERE u.id = ?", (user_id,)))
        return await self._with_badges(rows[0]) if rows else None

    async def _with_badges(self, row: Any) -> User:
        badges = await self.r.fetch(
            "SELECT code, name, awarded_at FROM badges WHERE user_id = ? ORDER BY awarded_at", (row[0],)
        )
        return _user(row, [Badge(*b) for b in badges])

    async def create_session(self, user_id: int, token_hash: str, expires_at: str) -> None:
        await self.w.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, user_id, now(), expires_at),
        )

    async def session_user(self, token_hash: str) -> User | None:
        rows = list(await self.r.fetch(
            f"SELECT {_U} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
            (token_hash, now()),
        ))
        return _user(rows[0]) if rows else None  # badges are read where they are shown (/me)

    async def delete_session(self, token_hash: str) -> None:
        await self.w.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    # --- confessions ---

    async def add_confession(
        self, author_id: int, content: str, category: str, anonymous: bool, daily_limit: int, since: str
    ) -> Confession | None:
        rows = (await self.w.execute(
            "INSERT INTO confessions (author_id, content, category, anonymous, status, created_at)"
            " SELECT ?, ?, ?, ?, 'pending', ?"
            " WHERE (SELECT count(*) FROM confessions WHERE author_id = ? AND created_at > ?) < ?"
            f" RETURNING {_C.replace('c.', '').rsplit(', u.username', 1)[0]}",
            (author_id, content, category, int(anonymous), now(), author_id, since, daily_limit),
        )).rows
        return _confession((*rows[0], None, None, None)) if rows else None

    async def oldest_since(self, author_id: int, since: str) -> str | None:
        rows = list(await self.r.fetch(
            "SELECT min(created_at) FROM confessions WHERE author_id = ? AND created_at > ?", (author_id, since)
        ))
        return rows[0][0] if rows else None

    async def confession(self, confession_id: int) -> Confession | None:
        return await self.r.run(lambda c: _one(c, confession_id), _ONE)

    async def feed(self, category: str | None, limit: int, after: Cursor | None) -> list[Confession]:
        where, args = ["c.status = 'published'"], list[object]()
        if category is not None:
            where.append("c.category = ?")
            args.append(category)
        if after is not None:
            where.append("(c.published_at, c.id) < (?, ?)")
            args += [*after]
        sql = f"SELECT {_C} {_FROM} WHERE {' AND '.join(where)} ORDER BY c.published_at DESC, c.id DESC LIMIT ?"
        return [_confession(r) for r in await self.r.fetch(sql, (*args, limit))]

    async def popular(self, limit: int, published_since: str) -> list[Confession]:
        sql = (
            # "+" keeps the planner on confessions_popular (few rows), not the whole feed's index.
            f"SELECT {_C} {_FROM} WHERE c.status = 'published' AND c.is_popular = 1 AND +c.published_at >= ?"
            " ORDER BY c.empathy_count DESC, c.id DESC LIMIT ?"
        )
        return [_confession(r) for r in await self.r.fetch(sql, (published_since, limit))]

    async def by_author(self, author_id: int, limit: int, after: Cursor | None) -> list[Confession]:
        where, args = ["c.author_id = ?", "c.status != 'deleted'"], list[object]([author_id])
        if after is not None:
            where.append("(c.created_at, c.id) < (?, ?)")
            args += [*after]
        sql = f"SELECT {_C} {_FROM} WHERE {' AND '.join(where)} ORDER BY c.created_at DESC, c.id DESC LIMIT ?"
        return [_confession(r) for r in await self.r.fetch(sql, (*args, limit))]

    async def delete_confession(self, confession_id: int) -> bool:
        """The row stays (its id is in others' empathies and reports, and in the queue); what was
        written and answered goes: taking a confession back erases it."""
        cur = await self.w.execute(
            "UPDATE confessions SET status = 'deleted', content = '', ai_response = NULL, rejection_reason = NULL"
            " WHERE id = ? AND status != 'deleted'", (confession_id,)
        )
        return cur.rowcount == 1

    async def finish(
        self, confession_id: int, status: str, ai_response: str | None, ai_fallback: bool, rejection_reason: str | None
    ) -> bool:
        published_at = now() if status == PUBLISHED else None
        cur = await self.w.execute(
            "UPDATE confessions SET status = ?, ai_response = ?, ai_fallback = ?, rejection_reason = ?, published_at = ?"
            " WHERE id = ? AND status = ?",
            (status, ai_response, int(ai_fallback), rejection_reason, published_at, confession_id, PENDING),
        )
        return cur.rowcount == 1

    async def pending_ids(self, older_than: str | None = None) -> list[int]:
        rows = await self.r.fetch(
            "SELECT id FROM confessions WHERE status = 'pending' AND created_at < ?"
            " AND (retry_at IS NULL OR retry_at <= ?) ORDER BY created_at",
            (older_than or "9999", now()),
        )
        return [r[0] for r in rows]

    async def fallback_ids(self, published_since: str) -> list[int]:
        rows = await self.r.fetch(
            "SELECT id FROM confessions WHERE status = 'published' AND ai_fallback = 1 AND published_at >= ?"
            " ORDER BY published_at DESC, id DESC", (published_since,))
        return [r[0] for r in rows]

    async def replace_fallback(self, confession_id: int, reply: str) -> bool:
        cur = await self.w.execute(
            "UPDATE confessions SET ai_response = ?, ai_fallback = 0"
            " WHERE id = ? AND status = 'published' AND ai_fallback = 1", (reply, confession_id))
        return cur.rowcount == 1

    async def hold(self, confession_id: int, first: float, cap: float) -> str | None:
        """Keep a pending confession waiting: the next try after ``first`` seconds, doubling with
        each hold up to ``cap``. Returns when, or None if it is no longer pending."""
        def op(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT holds FROM confessions WHERE id = ? AND status = 'pending'",
                             (confession_id,)).fetchone()
            if row is None:
                return None
            at = iso_after(min(cap, first * 2 ** min(row[0], 30)))
            db.execute("UPDATE confessions SET holds = holds + 1, retry_at = ? WHERE id = ?", (at, confession_id))
            return at
        return await self.w.run(op, "hold")

    # --- empathy ---

    async def set_empathy(self, user_id: int, confession_id: int, on: bool) -> Confession | None:
        def op(db: sqlite3.Connection) -> Confession | None:
            if on:
                db.execute(
                    "INSERT INTO empathies (confession_id, user_id, created_at)"
                    " SELECT id, ?, ? FROM confessions WHERE id = ? AND status = 'published'"
                    " ON CONFLICT DO NOTHING",
                    (user_id, now(), confession_id),
                )
            else:
                db.execute(
                    "DELETE FROM empathies WHERE confession_id = ? AND user_id = ?"
                    " AND EXISTS (SELECT 1 FROM confessions WHERE id = ? AND status = 'published')",
                    (confession_id, user_id, confession_id),
                )
            c = _one(db, confession_id)
            return c if c is not None and c.status == PUBLISHED else None
        return await self.w.run(op, "set_empathy")

    async def empathized(self, user_id: int, confession_ids: list[int]) -> set[int]:
        if not confession_ids:
            return set()
        marks = ",".join("?" * len(confession_ids))
        rows = await self.r.fetch(
            f"SELECT confession_id FROM empathies WHERE user_id = ? AND confession_id IN ({marks})",
            (user_id, *confession_ids),
        )
        return {r[0] for r in rows}

    # --- moderation ---

    async def add_report(self, user_id: int, confession_id: int, reason: str | None) -> bool:
        """Record a user's report of a published confession once; False if it is not published."""
        def op(db: sqlite3.Connection) -> bool:
            db.execute(
                "INSERT INTO reports (confession_id, user_id, reason, created_at)"
                " SELECT id, ?, ?, ? FROM confessions WHERE id = ? AND status = 'published' ON CONFLICT DO NOTHING",
                (user_id, reason, now(), confession_id))
            row = db.execute("SELECT status FROM confessions WHERE id = ?", (confession_id,)).fetchone()
            return bool(row) and row[0] == PUBLISHED
        return await self.w.run(op, "add_report")

    async def hide_if_reported(self, confession_id: int, threshold: int, accounts_before: str) -> bool:
        cur = await self.w.execute(
            "UPDATE confessions SET status = 'hidden' WHERE id = ? AND status = 'published'"
            " AND (SELECT count(*) FROM reports r JOIN users u ON u.id = r.user_id WHERE r.confession_id = ?"
            "      AND u.created_at <= ? AND r.user_id IS NOT confessions.author_id) >= ?",
            (confession_id, confession_id, accounts_before, threshold))
        return cur.rowcount == 1

    async def set_status(self, confession_id: int, from_statuses: tuple[str, ...], to: str,
                         fallback_reply: str | None = None) -> Confession | None:
        """Move a confession between statuses (admin hide/restore); None if it was in none of them."""
        marks = ",".join("?" * len(from_statuses))

        def op(db: sqlite3.Connection) -> Confession | None:
            cur = db.execute(
                f"UPDATE confessions SET status = ?, published_at = coalesce(published_at, ?),"
                f" ai_response = coalesce(ai_response, ?), ai_fallback = ai_fallback OR ai_response IS NULL"
                f" WHERE id = ? AND status IN ({marks})",
                (to, now(), fallback_reply, confession_id, *from_statuses))
            if cur.rowcount != 1:
                return None
            if to == PUBLISHED:  # an admin decided: earlier reports no longer count toward hiding it
                db.execute("DELETE FROM reports WHERE confession_id = ?", (confession_id,))
            return _one(db, confession_id)
        return await self.w.run(op, "set_status")

    async def by_status(self, status: str, limit: int, after: Cursor | None) -> list[Confession]:
        # The partial index confessions_status is usable only when its own WHERE term appears
        # in the query, so it is repeated here beside the status (from a closed set).
        assert status in ("pending", "rejected", "hidden", "reported"), status
        if status == "reported":  # found through the reports' primary key, not by scanning the wall
            where = ["c.status = 'published'", "c.id IN (SELECT confession_id FROM reports)"]
        else:
            where = [f"c.status = '{status}'", "c.status IN ('pending', 'rejected', 'hidden')"]
        args: list[Any] = []
        if after is not None:
            where.append("(c.created_at, c.id) < (?, ?)")
            args += list(after)
        sql = f"SELECT {_C} {_FROM} WHERE {' AND '.join(where)} ORDER BY c.created_at DESC, c.id DESC LIMIT ?"
        return [_confession(r) for r in await self.r.fetch(sql, (*args, limit))]

    async def delete_user(self, user_id: int, detach: bool = False) -> Removed | None:
        """The account and every row about it, in one transaction: sessions, badges, the reports
        it filed, the empathies it gave (the counts follow, by trigger), and its confessions with
        their empathies and reports — or, with ``detach``, its confessions kept with no author,
        anonymous for ever. LastAdmin if it is the last admin."""
        def op(db: sqlite3.Connection) -> Removed | None:
            row = db.execute("SELECT is_admin FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                return None
            if row[0] and db.execute("SELECT count(*) FROM users WHERE is_admin = 1").fetchone()[0] == 1:
                raise LastAdmin("the wall must keep at least one admin")
            own = "SELECT id FROM confessions WHERE author_id = ?"
            confessions = db.execute("SELECT id, category, status FROM confessions WHERE author_id = ?",
                                     (user_id,)).fetchall()
            empathized = db.execute(
                "SELECT c.id, c.category FROM empathies e JOIN confessions c ON c.id = e.confession_id"
                " WHERE e.user_id = ? AND c.author_id IS NOT ?", (user_id, user_id)).fetchall()
            mine = (("UPDATE confessions SET author_id = NULL, anonymous = 1 WHERE author_id = ?",) if detach else
                    (f"DELETE FROM empathies WHERE confession_id IN ({own})",
                     f"DELETE FROM reports WHERE confession_id IN ({own})", "DELETE FROM confessions WHERE author_id = ?"))
            for sql in ("DELETE FROM sessions WHERE user_id = ?", "DELETE FROM badges WHERE user_id = ?",
                        "DELETE FROM reports WHERE user_id = ?", "DELETE FROM empathies WHERE user_id = ?",
                        *mine, "DELETE FROM users WHERE id = ?"):
                db.execute(sql, (user_id,))
            return Removed([tuple(r) for r in confessions], [tuple(r) for r in empathized])
        return await self.w.run(op, "delete_user")

    async def export(self, user_id: int) -> dict[str, list[dict[str, object]]]:
        """Every row about ``user_id``, read in one transaction (one moment): the confessions they
        wrote (anonymous ones too), the empathies they gave, the reports they filed, their badges
        and sessions (never a token's hash)."""
        queries = {
            "confessions": "SELECT id, content, category, anonymous, status, ai_response, ai_fallback, rejection_reason,"
                           " empathy_count, is_popular, created_at, published_at FROM confessions WHERE author_id = ?"
                           " ORDER BY created_at, id",
            "empathies": "SELECT confession_id, created_at FROM empathies WHERE user_id = ? ORDER BY created_at",
            "reports": "SELECT confession_id, reason, created_at FROM reports WHERE user_id = ? ORDER BY created_at",
            "badges": "SELECT code, name, awarded_at FROM badges WHERE user_id = ? ORDER BY awarded_at",
            "sessions": "SELECT created_at, expires_at FROM sessions WHERE user_id = ? ORDER BY created_at",
        }

        def op(db: sqlite3.Connection) -> dict[str, list[dict[str, object]]]:
            db.execute("BEGIN")
            try:
                out = {}
                for name, sql in queries.items():
                    cur = db.execute(sql, (user_id,))
                    columns = [d[0] for d in cur.description]
                    out[name] = [dict(zip(columns, row)) for row in cur.fetchall()]
                for c in out["confessions"]:
                    for flag in ("anonymous", "ai_fallback", "is_popular"):
                        c[flag] = bool(c[flag])
                return out
            finally:
                db.execute("COMMIT")
        return await self.r.run(op, "export")

    async def report_counts(self, confession_ids: list[int]) -> dict[int, int]:
        if not confession_ids:
            return {}
        marks = ",".join("?" * len(confession_ids))
        rows = await self.r.fetch(f"SELECT confession_id, count(*) FROM reports WHERE confession_id IN ({marks})"
                                  " GROUP BY confession_id", tuple(confession_ids))
        return {r[0]: r[1] for r in rows}

    async def set_password(self, username: str, password_hash: str) -> bool:
        """A new password signs the user out everywhere: every session of theirs is deleted."""
        def op(db: sqlite3.Connection) -> bool:
            row = db.execute("UPDATE users SET password_hash = ? WHERE username = ? RETURNING id",
                             (password_hash, username)).fetchone()
            if row is not None:
                db.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))
            return row is not None
        return await self.w.run(op, "set_password")

    async def set_admin(self, username: str, on: bool) -> User | None:
        """None if there is no such user; ``LastAdmin`` if revoking would leave no admin (one
        statement, so two admins revoking each other at once cannot both succeed)."""
        cur = await self.w.execute(
            "UPDATE users SET is_admin = ? WHERE username = ?"
            " AND (? OR is_admin = 0 OR (SELECT count(*) FROM users WHERE is_admin = 1) > 1)",
            (int(on), username, int(on)))
        if cur.rowcount != 1:
            if await self.credentials(username) is not None:
                raise LastAdmin("the wall must keep at least one admin")
            return None
        found = await self.credentials(username)
        return found[0] if found else None

    # --- scheduled jobs ---

    async def mark_popular(self, threshold: int, badge: tuple[str, str], accounts_before: str) -> dict[str, int]:
        """Set-based: one UPDATE for the confessions, one INSERT for their authors' badges. The
        total ``empathy_count`` (an index) finds candidates; only empathies of accounts made
        before ``accounts_before``, not the author's, count toward the threshold."""
        def op(db: sqlite3.Connection) -> dict[str, int]:
            popular = db.execute(
                "UPDATE confessions SET is_popular = 1"
                " WHERE status = 'published' AND is_popular = 0 AND empathy_count >= ?"
                " AND (SELECT count(*) FROM empathies e JOIN users u ON u.id = e.user_id WHERE e.confession_id = confessions.id"
                "      AND u.created_at <= ? AND e.user_id IS NOT confessions.author_id) >= ?",
                (threshold, accounts_before, threshold)).rowcount
            awarded = db.execute(
                "INSERT INTO badges (user_id, code, name, awarded_at)"
                " SELECT DISTINCT author_id, ?, ?, ? FROM confessions"
                " WHERE status = 'published' AND is_popular = 1 AND author_id IS NOT NULL"
                " ON CONFLICT DO NOTHING", (*badge, now())).rowcount
            return {"newly_popular": popular, "badges_awarded": awarded}
        return await self.w.run(op, "mark_popular")

    async def purge_sessions(self) -> int:
        cur = await self.w.execute("DELETE FROM sessions WHERE expires_at <= ?", (now(),))
        return cur.rowcount

    async def claim_run(self, name: str, scheduled_for: str, claim_timeout: float) -> int | None:
        """Claim one tick of a job; None if another process (or an earlier start) has it — unless
        that claim never finished and is older than ``claim_timeout`` seconds (its run died)."""
        rows = (await self.w.execute(
            "INSERT INTO job_runs (name, scheduled_for, started_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name, scheduled_for) DO UPDATE SET started_at = excluded.started_at, error = NULL"
            " WHERE job_runs.finished_at IS NULL AND job_runs.started_at < ?"
            " RETURNING id", (name, scheduled_for, now(), iso_after(-claim_timeout)))).rows
        return rows[0][0] if rows else None

    async def release_run(self, run_id: int) -> None:
        """Give back the claim of a run cut short, so its tick can run again at once."""
        await self.w.execute("DELETE FROM job_runs WHERE id = ? AND finished_at IS NULL", (run_id,))

    async def finish_run(self, run_id: int, result: str | None, error: str | None) -> None:
        """Record the end of a run, and forget runs older than a week (a job every minute
        would otherwise grow the table forever)."""
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE job_runs SET finished_at = ?, result = ?, error = ? WHERE id = ?",
                       (now(), result, error, run_id))
            db.execute("DELETE FROM job_runs WHERE started_at < ?", (iso_after(-7 * 86400),))
        await self.w.run(op, "finish_run")

    async def last_run(self, name: str) -> dict[str, str | None] | None:
        rows = list(await self.r.fetch(
            "SELECT scheduled_for, started_at, finished_at, result, error FROM job_runs WHERE name = ?"
            " ORDER BY started_at DESC LIMIT 1", (name,)))
        if not rows:
            return None
        return dict(zip(("scheduled_for", "started_at", "finished_at", "result", "error"), rows[0]))

    async def stats(self) -> dict[str, object]:
        by_status = {s: 0 for s in ("pending", "published", "rejected")}
        popular = 0
        for status, n, pop in await self.r.fetch(
            "SELECT status, count(*), sum(is_popular) FROM confessions GROUP BY status"
        ):
            if status in by_status:
                by_status[status] = n
            if status == PUBLISHED:
                popular = pop or 0
        empathies = list(await self.r.fetch(
            "SELECT count(*) FROM empathies e JOIN confessions c ON c.id = e.confession_id WHERE c.status = 'published'"
        ))[0][0]
        users = list(await self.r.fetch("SELECT count(*) FROM users"))[0][0]
        by_category = dict(await self.r.fetch(
            "SELECT category, count(*) FROM confessions WHERE status = 'published' GROUP BY category"
        ))
        return {
            "confessions": {"total": sum(by_status.values()), **by_status, "popular": popular},
            "empathies": empathies,
            "users": users,
            "by_category": by_category,
        }
