"""SQLite storage: migrations are idempotent; feed queries are index range scans, never sorts or scans;
writes committed in groups fail one by one and are durable once answered."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import structlog

from cwalld import config as configmod
from cwalld.domain import PUBLISHED, UsernameTaken, iso_after
from cwalld.storage.sqlite import SQLiteStorage
from cwalld.storage.thread import SQLiteThread


async def test_migrations_apply_once(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    for _ in range(3):
        s = SQLiteStorage(path)
        await s.open()
        await s.close()
    with sqlite3.connect(path) as db:
        migrations = len(list((Path(__file__).parent.parent / "cwalld" / "storage" / "migrations").glob("*.sql")))
        assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == migrations >= 2
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_processes_starting_together_on_a_new_database_all_open(tmp_path: Path) -> None:
    # SQLite answers "database is locked" at once, without its busy handler, to a connection
    # turning a database to WAL while another does the same (waiting could deadlock).
    for attempt in range(30):
        path = str(tmp_path / f"new{attempt}.db")
        stores = [SQLiteStorage(path) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))
        assert sum(s.created for s in stores) == 1
        for s in stores:
            await s.close()


async def test_hot_queries_use_indexes(tmp_path: Path) -> None:
    s = SQLiteStorage(str(tmp_path / "q.db"))
    await s.open()
    statements: list[str] = []
    await s.r.set_trace_callback(statements.append)
    user = await s.create_user("planner", "x", None, False)
    since = iso_after(-86400)
    for i in range(30):
        c = await s.add_confession(user.id, f"text {i}", "love", True, 100, since)
        assert c is not None
        await s.finish(c.id, PUBLISHED, "reply", False, None)
    page = await s.feed(None, 5, None)
    await s.feed(None, 5, (page[-1].published_at or "", page[-1].id))
    await s.feed("love", 5, (page[-1].published_at or "", page[-1].id))
    await s.popular(5, since)
    await s.by_author(user.id, 5, (page[-1].created_at, page[-1].id))
    await s.empathized(user.id, [c.id for c in page])
    await s.by_status("hidden", 5, None)
    await s.by_status("pending", 5, (page[-1].created_at, page[-1].id))
    queries = [q for q in statements if q.lstrip().upper().startswith("SELECT") and "FROM confessions" in q]
    assert len(queries) >= 5
    for q in queries:
        rows = [row[3] for row in await s.r.fetch("EXPLAIN QUERY PLAN " + q)]
        # an ordered walk of an index (SCAN … USING INDEX, stopped by LIMIT) or a SEARCH; never a
        # table scan and never a sort
        assert all("USING" in r for r in rows if r.startswith("SCAN")), f"{q}\n→ {rows}"
        assert not any("TEMP B-TREE" in r for r in rows), f"{q}\n→ {rows}"
    await s.close()


async def test_group_commit_fails_writes_one_by_one(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    s = SQLiteStorage(path)
    await s.open()
    statements: list[str] = []
    await s.w.set_trace_callback(statements.append)

    def half_done(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO users (username, password_hash, created_at) VALUES ('half', 'x', 'now')")
        raise RuntimeError("scripted failure after a statement")

    names = [f"user{i}" for i in range(40)] + ["user7"]  # one name twice
    outcomes = await asyncio.gather(*(s.create_user(n, "x", None, False) for n in names),
                                    s.w.run(half_done), return_exceptions=True)
    assert sum(isinstance(o, UsernameTaken) for o in outcomes) == 1
    assert isinstance(outcomes[-1], RuntimeError)
    assert sum(q.startswith("COMMIT") for q in statements) < 10  # 42 writes, a few transactions
    with sqlite3.connect(path) as db:  # what was answered is on disk; the failures left nothing
        names_on_disk = {r[0] for r in db.execute("SELECT username FROM users")}
    assert names_on_disk == set(names)
    await s.close()


async def test_writer_errors_reach_the_caller(tmp_path: Path) -> None:
    s = SQLiteStorage(str(tmp_path / "e.db"))
    await s.open()
    with pytest.raises(sqlite3.OperationalError):
        await s.w.execute("INSERT INTO no_such_table VALUES (1)")
    assert (await s.w.execute("SELECT count(*) FROM users")).rows == [(0,)]  # the writer goes on
    await s.close()


async def test_a_new_slow_query_threshold_reaches_both_connections(tmp_path: Path) -> None:
    s = SQLiteStorage(str(tmp_path / "s.db"), slow_query_ms=0)  # 0: off
    await s.open()
    with structlog.testing.capture_logs() as logs:
        await s.stats()
        await s.create_user("yavas", "x", None, False)
        assert [e for e in logs if e["event"] == "slow_query"] == []
        s.reconfigure(configmod.build({"log": {"slow_query_ms": 0.000001}}))  # a reload of [log].slow_query_ms
        await s.stats()
        await s.create_user("yavas2", "x", None, False)
        await asyncio.sleep(0)
    queries = [e["query"] for e in logs if e["event"] == "slow_query"]
    assert any(q.startswith("SELECT") for q in queries) and any(q.startswith("INSERT INTO users") for q in queries)
    await s.close()


async def test_a_closed_connection_fails_at_once_instead_of_hanging(tmp_path: Path) -> None:
    reader = SQLiteThread(str(tmp_path / "c.db"), [])
    await reader.open()
    assert await reader.fetch("SELECT 1") == [(1,)]
    await reader.close()
    with pytest.raises(sqlite3.ProgrammingError):
        await reader.fetch("SELECT 1")
