"""A SQLite connection owned by one thread, serving the event loop in batches.

Why not aiosqlite: under load each statement paid a thread hop and a loop wakeup of its own,
and each write a commit of its own — with ``synchronous=FULL`` one fsync each — while a
signed-in POST plus its publication are two writes. Here the thread takes every statement
waiting when it comes round and one loop wakeup settles them all. On the write connection
(``grouped``) they also run in one transaction, each in its own SAVEPOINT so one failing write
fails only its caller, then one COMMIT, one fsync. No caller hears "done" before the COMMIT that
holds its write: durability is what it was, the fsyncs are shared.

A full disk or an I/O error is not a bug of the caller's: it reaches callers as
``StorageUnavailable`` (a 503 with Retry-After at the edge), and the thread's ``health`` says
``full`` or ``error`` until a write succeeds again — logged once per episode each way.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from cwalld import metrics
from cwalld.domain import StorageUnavailable

log = structlog.get_logger("cwalld.storage")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 256  # writes per transaction: bounds how long one COMMIT keeps the others waiting
# SQLite's primary result codes that mean "the storage cannot take this now", not "your request
# is wrong": disk full, I/O error, cannot open, read-only, locked past busy_timeout.
_UNAVAILABLE = {13: "full", 10: "error", 14: "error", 8: "error", 5: "busy", 6: "busy"}


def unavailable(error: BaseException) -> str | None:
    """``full``, ``error`` or ``busy`` for an error that means the storage is unavailable."""
    code = getattr(error, "sqlite_errorcode", None)
    return _UNAVAILABLE.get(code & 0xFF) if isinstance(error, sqlite3.Error) and code is not None else None


@dataclass(slots=True)
class Done:
    """What a write statement left: its rows (``RETURNING`` or a read) and how many rows it changed."""

    rows: list[Any]
    rowcount: int


@dataclass(slots=True)
class _Item:
    op: Op
    future: asyncio.Future[Any]
    label: str
    alone: bool = False  # runs outside any group: it manages its own transaction
    outcome: Any = None
    error: BaseException | None = None
    ms: float = field(default=0.0)


def _statement(sql: str, args: Iterable[Any]) -> Op:
    def op(c: sqlite3.Connection) -> Done:
        cur = c.execute(sql, tuple(args))
        return Done(cur.fetchall(), cur.rowcount)
    return op


def _fetch(sql: str, args: Iterable[Any]) -> Op:
    def op(c: sqlite3.Connection) -> list[Any]:
        return c.execute(sql, tuple(args)).fetchall()
    return op


def _pragma(conn: sqlite3.Connection, pragma: str, patience: float = 10.0) -> None:
    """Set ``pragma``, trying again while SQLite says the database is busy. Turning a database
    to WAL is refused at once, without the busy handler, when another connection is doing the
    same (waiting could deadlock): processes starting together on a new database."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SQLiteThread:
    def __init__(self, path: str, pragmas: list[str], slow_query_ms: float = 100.0, grouped: bool = False,
                 name: str = "sqlite") -> None:
        self.path, self.pragmas, self.slow_query_ms = path, pragmas, slow_query_ms
        self.grouped, self.name = grouped, name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Taken to put work and to put the stop marker: nothing is ever queued behind the marker,
        # so every call made during or after close() fails at once instead of waiting for ever.
        self._gate = threading.Lock()
        self._accepting = False
        self.health = "ok"  # ok | full | error | busy: what the last write (or failure) said

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(connected,), name=self.name, daemon=True)
        self._accepting = True
        self._thread.start()
        await connected

    async def close(self) -> None:
        if self._thread is not None:
            with self._gate:
                if self._accepting:
                    self._accepting = False
                    self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # --- what callers use ---

    def run(self, op: Callable[[sqlite3.Connection], T], label: str = "", alone: bool = False) -> asyncio.Future[T]:
        """Run ``op(connection)`` in the thread; its result (once committed, when grouped).
        ``alone``: outside any group transaction, for an op that manages its own."""
        if self._loop is None:
            raise sqlite3.ProgrammingError("the database connection is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        with self._gate:
            if not self._accepting:  # closing, closed or never opened: fail, never hang
                raise sqlite3.ProgrammingError("the database connection is closed")
            self._queue.put(_Item(op, future, label, alone))
        return future

    def execute(self, sql: str, args: Iterable[Any] = ()) -> asyncio.Future[Done]:
        return self.run(_statement(sql, args), sql)

    def fetch(self, sql: str, args: Iterable[Any] = ()) -> asyncio.Future[list[Any]]:
        return self.run(_fetch(sql, args), sql)

    async def set_trace_callback(self, fn: Callable[[str], None] | None) -> None:
        await self.run(lambda c: c.set_trace_callback(fn), alone=True)

    # --- the thread ---

    def _main(self, connected: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in self.pragmas:
                _pragma(conn, pragma)
        except Exception as e:  # noqa: BLE001 - handed to open()'s caller
            with self._gate:
                self._accepting = False
            self._fail_waiting(e)
            self._loop.call_soon_threadsafe(_settle_one, connected, None, e)
            return
        self._loop.call_soon_threadsafe(_settle_one, connected, None, None)
        try:
            while (first := self._queue.get()) is not None:
                items = [first]
                while len(items) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)  # stop after this group
                        break
                    items.append(nxt)
                try:
                    self._run(conn, items)
                except Exception as e:  # noqa: BLE001 - whatever broke, no caller is left waiting
                    for item in items:
                        item.outcome, item.error = None, item.error or e
                self._loop.call_soon_threadsafe(self._settle, items)
        finally:
            conn.close()

    def _fail_waiting(self, error: BaseException) -> None:
        items: list[_Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.error = error
                items.append(item)
        if items:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._settle, items)

    def _run(self, conn: sqlite3.Connection, items: list[_Item]) -> None:
        group = [i for i in items if self.grouped and not i.alone]
        for item in items:
            if not (self.grouped and not item.alone):
                self._call(conn, item)
        if not group:
            return
        try:
            self._group(conn, group)
        except sqlite3.Error as e:  # BEGIN, a SAVEPOINT or COMMIT failed: nothing of the group holds
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the next BEGIN tells
            for item in group:
                item.outcome, item.error = None, item.error or e

    def _group(self, conn: sqlite3.Connection, group: list[_Item]) -> None:
        conn.execute("BEGIN IMMEDIATE")  # waits busy_timeout for another process's write
        for item in group:
            conn.execute("SAVEPOINT w")
            ok = self._call(conn, item)
            if not conn.in_transaction:  # an error (disk full, I/O) that ended the whole transaction
                for other in group:
                    other.outcome, other.error = None, other.error or item.error
                return
            conn.execute("RELEASE w" if ok else "ROLLBACK TO w")
            if not ok:
                conn.execute("RELEASE w")
        conn.execute("COMMIT")

    def _call(self, conn: sqlite3.Connection, item: _Item) -> bool:
        started = time.perf_counter()
        try:
            item.outcome = item.op(conn)
            return True
        except Exception as e:  # noqa: BLE001 - the caller's error, raised where it awaits
            item.error = e
            return False
        finally:
            item.ms = (time.perf_counter() - started) * 1000

    def _settle(self, items: list[_Item]) -> None:
        """On the loop: answer every caller of a group, log its slow statements, and keep
        ``health`` (a write that succeeded means the storage is back)."""
        for item in items:
            kind = unavailable(item.error) if item.error is not None else None
            if kind is not None:
                self._unhealthy(kind, item.error)  # type: ignore[arg-type]
                item.error = StorageUnavailable(f"the database cannot take this now ({kind})")
            elif self.grouped and item.error is None and self.health != "ok":
                self.health = "ok"
                log.info("storage_available", connection=self.name)
            _settle_one(item.future, item.outcome, item.error)
            if item.ms >= self.slow_query_ms > 0 and item.label:
                metrics.SLOW_QUERIES.inc()
                log.warning("slow_query", query=" ".join(item.label.split())[:300], ms=round(item.ms, 1))


    def _unhealthy(self, kind: str, error: BaseException) -> None:
        if self.health == "ok":
            log.warning("storage_unavailable", connection=self.name, kind=kind, error=str(error))
            metrics.STORAGE_UNAVAILABLE.inc()
        self.health = kind


def _settle_one(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
