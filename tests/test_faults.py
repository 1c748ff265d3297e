"""Storage, cache and scheduler when things break (issue 10, defects 3, 4, 5, 7, 10, 11, 12).

Faults are real: SQLite triggers that make a write fail, ``max_page_count`` that makes SQLite
answer SQLITE_FULL exactly as a full disk does, a Redis stopped and restarted with its data.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from cwalld.app import DAEMON
from cwalld.cache import PAUSE, Cache
from cwalld.cache.local import LocalCache
from cwalld.cache.redis import RedisCache
from cwalld.domain import iso_after
from cwalld.scheduler import Job, Scheduler
from cwalld.storage.sqlite import SQLiteStorage
from tests.conftest import Api, RedisServer, test_config


# --- storage ---


async def test_a_storage_call_during_close_fails_at_once(tmp_path: Path) -> None:
    """Defect 10: work queued behind the connection thread's stop marker was never answered:
    a call made while close() was under way hung for ever."""
    storage = SQLiteStorage(str(tmp_path / "c.db"))
    await storage.open()
    writer = storage.w
    calls = [asyncio.ensure_future(storage.claim_run(f"j{i}", "t", 600)) for i in range(100)]
    await asyncio.sleep(0.2)  # answered; the writer is idle
    closing = asyncio.ensure_future(writer.close())
    await asyncio.sleep(0)  # close() has put its stop marker
    for i in range(5):
        try:
            calls.append(asyncio.ensure_future(storage.claim_run(f"late{i}", "t", 600)))
        except sqlite3.ProgrammingError:
            pass  # refused at once: as good as failing at once
    done, not_done = await asyncio.wait(calls, timeout=5)
    assert not not_done, f"{len(not_done)} storage calls still waiting after close"
    await closing
    await storage.close()
    failed = [f.exception() for f in done if f.exception() is not None]
    assert all(isinstance(e, sqlite3.ProgrammingError) for e in failed), failed


async def test_disk_full_is_a_503_and_heals_by_itself(tmp_path: Path, make_client: Any) -> None:
    """Defect 12: a full disk answered 500 `internal` and /readyz kept saying {"db":"ok"}."""
    client = await make_client(test_config(tmp_path, limits={"daily_confessions": 1000}))
    api = Api(client)
    await api.settled()
    token = await api.register()
    storage = client.app[DAEMON].storage
    pages = (await storage.w.fetch("PRAGMA page_count"))[0][0]
    await storage.w.run(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"), alone=True)  # the disk is full
    with structlog.testing.capture_logs() as logs:
        statuses = []
        for i in range(40):
            r = await api.post(token, f"Disk doluyken yazılan itiraf numarası {i} " + "x" * 400)
            statuses.append(r.status)
            if r.status == 503:
                body = await r.json()
                assert body["error"]["code"] == "storage_unavailable"
                assert int(r.headers["Retry-After"]) >= 1
        assert 500 not in statuses and 503 in statuses, statuses
        r = await client.get("/readyz")
        assert r.status == 503 and (await r.json())["db"] == "full"
    assert [e["event"] for e in logs].count("storage_unavailable") == 1, [e["event"] for e in logs]
    await storage.w.run(lambda c: c.execute("PRAGMA max_page_count = 1073741823"), alone=True)  # space back
    r = await api.post(token, "Yer açıldıktan sonra yazılan itiraf.")
    assert r.status == 202, await r.text()
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["db"] == "ok"


# --- cache ---


def filler(value: bytes, gate: asyncio.Event | None = None) -> Any:
    async def fill() -> bytes:
        if gate is not None:
            await gate.wait()
        return value
    return fill


async def test_cancelling_the_first_reader_of_a_flight_cancels_only_it() -> None:
    """Defect 11: the first request of a single flight ran the fill itself; cancelling it (a
    client that went away) cancelled every reader waiting on the same page."""
    cache, gate = Cache(LocalCache()), asyncio.Event()
    first = asyncio.ensure_future(cache.page("feed", ["feed:all"], "p", 60, filler(b"page", gate)))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(cache.page("feed", ["feed:all"], "p", 60, filler(b"other")))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.wait_for(second, 2) == b"page"


async def test_a_flight_in_another_process_never_serves_what_a_write_replaced(redis_server: Any, redis_prefix: str) -> None:
    """Defect 7: the flight key was this process's epoch + base, so after process A's write
    (bump) a read in process B joined a flight that began before it and got the old page."""
    a = Cache(RedisCache(redis_server.url, redis_prefix))
    b = Cache(RedisCache(redis_server.url, redis_prefix))
    gate = asyncio.Event()
    old = asyncio.ensure_future(b.page("feed", ["feed:all"], "p", 60, filler(b"old", gate)))
    await asyncio.sleep(0.05)
    await a.bump("feed:all")  # A committed a change and invalidated
    fresh = await asyncio.wait_for(b.page("feed", ["feed:all"], "p", 60, filler(b"new")), 2)
    gate.set()
    assert await old == b"old"
    assert fresh == b"new"
    await a.close()
    await b.close()


async def test_after_a_cache_outage_the_first_read_is_fresh(tmp_path: Path, redis_prefix: str) -> None:
    """Defect 5: an invalidation lost in an outage was caught up (global bumped) only after the
    first lookup, which served the pre-outage page. A Redis that persists its data comes back
    with the old entry; the first read must not see it."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    try:
        cache = Cache(RedisCache(server.url, redis_prefix))
        assert await cache.page("feed", ["feed:all"], "p", 60, filler(b"before")) == b"before"
        server.stop()
        await cache.bump("feed:all")  # the write's invalidation is lost
        server.start()
        await asyncio.sleep(PAUSE + 0.1)
        assert await cache.page("feed", ["feed:all"], "p", 60, filler(b"after")) == b"after"
        await cache.close()
    finally:
        server.stop()


# --- scheduler ---


async def test_a_failed_run_record_does_not_end_the_job(tmp_path: Path) -> None:
    """Defect 3: one failed write of a run record (finish_run) ended the job's loop until restart."""
    storage = SQLiteStorage(str(tmp_path / "s.db"))
    await storage.open()
    runs: list[float] = []

    async def job() -> dict[str, int]:
        runs.append(time.monotonic())
        return {"n": len(runs)}

    await storage.w.execute("CREATE TRIGGER fail_finish BEFORE UPDATE ON job_runs"
                            " BEGIN SELECT RAISE(ABORT, 'injected: disk I/O error'); END")
    scheduler = Scheduler(storage, [Job("every_second", "* * * * * *", job)])
    with structlog.testing.capture_logs() as logs:
        await scheduler.start()
        await asyncio.sleep(1.6)
        await storage.w.execute("DROP TRIGGER fail_finish")
        await asyncio.sleep(1.2)
        alive = scheduler.running
        await scheduler.stop()
    await storage.close()
    assert alive
    assert len(runs) >= 3, runs
    assert any(e["event"] == "job_record_failed" for e in logs)


async def test_a_reload_never_cancels_a_running_job(tmp_path: Path) -> None:
    """Defect 4: SIGHUP restarted the job loops by cancelling them, and a running popular job
    with them: rows marked, caches never bumped, the tick claimed with no end for ever."""
    storage = SQLiteStorage(str(tmp_path / "s.db"))
    await storage.open()
    gate, ended = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, int]:
        await gate.wait()
        ended.set()
        return {"done": 1}

    scheduler = Scheduler(storage, [Job("popular", "0 0 1 1 *", slow)])
    await scheduler.start()  # the catch-up run of the last tick starts now
    await asyncio.sleep(0.2)
    await scheduler.reschedule([Job("popular", "0 0 1 1 *", slow)], "UTC")
    gate.set()
    await asyncio.wait_for(ended.wait(), 2)
    await asyncio.sleep(0.1)
    last = await storage.last_run("popular")
    await scheduler.stop()
    await storage.close()
    assert last is not None and last["finished_at"] is not None and last["error"] is None, last


async def test_a_tick_whose_run_died_runs_again_after_claim_timeout(tmp_path: Path) -> None:
    """Defect 4: a tick claimed by a run that died (kill -9) stayed claimed for ever."""
    storage = SQLiteStorage(str(tmp_path / "s.db"))
    await storage.open()
    ran = asyncio.Event()

    async def job() -> dict[str, int]:
        ran.set()
        return {}

    probe = Scheduler(storage, [Job("popular", "0 0 1 1 *", job)])
    tick = probe.last_tick(probe.jobs["popular"])
    assert await storage.claim_run("popular", tick, 600) is not None  # a process claimed it ...
    await storage.w.execute("UPDATE job_runs SET started_at = ?", (iso_after(-5),))  # ... and died 5 s ago
    fresh = Scheduler(storage, [Job("popular", "0 0 1 1 *", job)], claim_timeout=60)
    await fresh.start()
    await asyncio.sleep(0.3)
    assert not ran.is_set()  # younger than claim_timeout: maybe still running elsewhere
    await fresh.stop()
    stale = Scheduler(storage, [Job("popular", "0 0 1 1 *", job)], claim_timeout=2)
    await stale.start()
    await asyncio.wait_for(ran.wait(), 2)
    await stale.stop()
    rows = await storage.r.fetch("SELECT count(*), count(finished_at) FROM job_runs")
    await storage.close()
    assert rows[0] == (1, 1)  # the one tick, run once more, now finished


# --- disk full at the storage port ---


async def test_storage_full_is_a_storage_error_the_service_can_name(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "f.db"))
    await storage.open()
    pages = (await storage.w.fetch("PRAGMA page_count"))[0][0]
    await storage.w.run(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"), alone=True)
    from cwalld.domain import StorageUnavailable

    with pytest.raises(StorageUnavailable):
        for i in range(200):
            await storage.claim_run("x" * 300 + str(i), "t", 600)
    assert storage.health == "full"
    await storage.close()
    assert sqlite3  # the adapter, not the caller, knows sqlite3's error codes
