"""The storage port: everything cwalld keeps, behind one small interface.

The database is the source of truth; queues and caches may forget, this may not. Two adapters:
``storage.sqlite`` (one machine) and ``storage.postgres`` (several), the same schema column for
column; all SQL lives in them, and ``tests/test_storage_contract.py`` holds both to one contract.
Anonymous authors never leave this layer: rows of anonymous confessions carry ``author=None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cwalld.config import Config
from cwalld.domain import Confession, User

RESTART_KEYS = ("storage.path", "storage.synchronous", "storage.url", "storage.password_file", "storage.pool_size")
"""Settings the connections are opened with: a reload reports a change and keeps them."""


def where(config: Config) -> str:
    """The database, said for the operator: the SQLite file, or the server and database (never
    the password)."""
    if not config.storage.url:
        return config.storage.path
    scheme, _, rest = config.storage.url.partition("://")
    user, at, host = rest.rpartition("@")
    return f"{scheme}://{user.split(':')[0]}{at}{host.split('?')[0]}"


Cursor = tuple[str, int]
"""Keyset position: (timestamp, id) of the last item a page returned."""


@dataclass(frozen=True, slots=True)
class Removed:
    """What deleting an account changed, for the caches and live updates to follow: its own
    confessions ``(id, category, status)`` — deleted, or detached (kept with no author) — and
    those whose empathy count it lowered ``(id, category)``."""
    confessions: list[tuple[int, str, str]]
    empathized: list[tuple[int, str]]


class Storage(Protocol):
    """Every method the use cases, the scheduler and the entrypoints call: the whole port, so an
    adapter that implements it (SQLite or PostgreSQL) is all a deployment needs."""

    created: bool  # after open: the database was made by it (the scheduler then has nothing to catch up)

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    def reconfigure(self, config: Config) -> None:
        """A reload: what the adapter may change while open (the slow-query threshold)."""

    @property
    def health(self) -> str:
        """``ok``, or why writes fail now (``full``, ``error``, ``busy``) until one succeeds."""

    async def secret(self, name: str) -> str:
        """A random value made once per database, the same for every process using it."""

    # users and sessions
    async def create_user(self, username: str, password_hash: str, name: str | None, is_admin: bool) -> User:
        """Raises ``UsernameTaken``."""
    async def credentials(self, username: str) -> tuple[User, str] | None: ...
    async def user(self, user_id: int) -> User | None: ...
    async def set_admin(self, username: str, on: bool) -> User | None: ...
    async def set_password(self, username: str, password_hash: str) -> bool:
        """False if there is no such user; signs the user out everywhere."""
    async def create_session(self, user_id: int, token_hash: str, expires_at: str) -> None: ...
    async def session_user(self, token_hash: str) -> User | None:
        """The user of an unexpired session (without badges: see ``user``), else None."""
    async def delete_session(self, token_hash: str) -> None: ...
    async def purge_sessions(self) -> int: ...

    # confessions
    async def add_confession(
        self, author_id: int, content: str, category: str, anonymous: bool, daily_limit: int, since: str
    ) -> Confession | None:
        """Insert as pending unless the author already has ``daily_limit`` since ``since``
        (then None). One atomic step, so the limit is exact under concurrency."""
    async def oldest_since(self, author_id: int, since: str) -> str | None: ...
    async def confession(self, confession_id: int) -> Confession | None: ...
    async def feed(self, category: str | None, limit: int, after: Cursor | None) -> list[Confession]: ...
    async def popular(self, limit: int, published_since: str) -> list[Confession]: ...
    async def by_author(self, author_id: int, limit: int, after: Cursor | None) -> list[Confession]: ...
    async def by_status(self, status: str, limit: int, after: Cursor | None) -> list[Confession]: ...
    # ``status``: pending, rejected, hidden, or reported (published, with a report)
    async def report_counts(self, confession_ids: list[int]) -> dict[int, int]: ...  # only those reported
    async def backup(self, target: str) -> dict[str, object]: ...  # file, bytes, seconds, counts
    async def delete_user(self, user_id: int, detach: bool = False) -> Removed | None: ...  # None: no user; LastAdmin
    async def export(self, user_id: int) -> dict[str, list[dict[str, object]]]: ...  # what is kept about a user
    async def delete_confession(self, confession_id: int) -> bool: ...
    async def finish(
        self, confession_id: int, status: str, ai_response: str | None, ai_fallback: bool, rejection_reason: str | None
    ) -> bool:
        """Publish or reject a pending confession; False (and no change) if it was not pending."""
    async def pending_ids(self, older_than: str | None = None) -> list[int]:
        """Pending confessions created before ``older_than``, except those held until later."""
    async def fallback_ids(self, published_since: str) -> list[int]:
        """Published confessions with a fallback reply since then, newest first."""
    async def replace_fallback(self, confession_id: int, reply: str) -> bool:
        """Replace a published fallback reply by the model's; False if it is none (any more)."""
    async def hold(self, confession_id: int, first: float, cap: float) -> str | None:
        """Hold a pending confession for moderation, with backoff; when it is tried next."""
    async def set_status(self, confession_id: int, from_statuses: tuple[str, ...], to: str,
                         fallback_reply: str | None = None) -> Confession | None:
        """Move a confession between statuses (admin hide/restore); None if it was in none of them."""

    # empathy and reports
    async def set_empathy(self, user_id: int, confession_id: int, on: bool) -> Confession | None:
        """Idempotent; returns the confession as it now is, or None if it is not published."""
    async def empathized(self, user_id: int, confession_ids: list[int]) -> set[int]: ...
    async def add_report(self, user_id: int, confession_id: int, reason: str | None) -> bool:
        """Record a user's report of a published confession once; False if it is not published."""
    async def hide_if_reported(self, confession_id: int, threshold: int, accounts_before: str) -> bool:
        """Hide at ``threshold`` reports from accounts made before ``accounts_before``, not the author's."""

    # scheduled jobs
    async def mark_popular(self, threshold: int, badge: tuple[str, str], accounts_before: str) -> dict[str, int]: ...
    async def claim_run(self, name: str, scheduled_for: str, claim_timeout: float) -> int | None:
        """Claim one tick of a job once across processes (again after ``claim_timeout`` if its run died)."""
    async def release_run(self, run_id: int) -> None: ...
    async def finish_run(self, run_id: int, result: str | None, error: str | None) -> None: ...
    async def last_run(self, name: str) -> dict[str, str | None] | None: ...

    async def stats(self) -> dict[str, object]: ...
