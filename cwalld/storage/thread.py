"""A SQLite connection owned by one thread, serving the event loop in batches.

Why not aiosqlite: under load each statement paid a thread hop and a loop wakeup of its own,
and each write a commit of its own — with ``synchronous=FULL`` one fsync each — while a
signed-in POST plus its publication are two writes. Here the thread takes every statement
waiting when it comes round and one loop wakeup settles them all. On the write connection
(``grouped``) they also run in one transaction, each in its own SAVEPOINT so one failing write
fails only its caller, then one COMMIT, one fsync. No caller hears "done" before the COMMIT that
holds its write: durability is what it was, the fsyncs are shared.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from cwalld import metrics

log = structlog.get_logger("cwalld.storage")

Op = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 256  # writes per transaction: bounds how long one COMMIT keeps the others waiting


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


class SQLiteThread:
    def __init__(self, path: str, pragmas: list[str], slow_query_ms: float = 100.0, grouped: bool = False,
                 name: str = "sqlite") -> None:
        self.path, self.pragmas, self.slow_query_ms = path, pragmas, slow_query_ms
        self.grouped, self.name = grouped, name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(connected,), name=self.name, daemon=True)
        self._thread.start()
        await connected

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # --- what callers use ---

    def run(self, op: Op, label: str = "", alone: bool = False) -> asyncio.Future[Any]:
        """Run ``op(connection)`` in the thread; its result (once committed, when grouped).
        ``alone``: outside any group transaction, for an op that manages its own."""
        if self._thread is None or self._loop is None:  # closed (or never opened): fail, never hang
            raise sqlite3.ProgrammingError("the database connection is closed")
        future = self._loop.create_future()
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
                conn.execute(f"PRAGMA {pragma}")
        except Exception as e:  # noqa: BLE001 - handed to open()'s caller
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
        """On the loop: answer every caller of a group, and log its slow statements."""
        for item in items:
            _settle_one(item.future, item.outcome, item.error)
            if item.ms >= self.slow_query_ms > 0 and item.label:
                metrics.SLOW_QUERIES.inc()
                log.warning("slow_query", query=" ".join(item.label.split())[:300], ms=round(item.ms, 1))


def _settle_one(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
