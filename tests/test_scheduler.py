"""The scheduler and its jobs: popular + badges, ticks once across processes, catch-up, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cwalld.domain import iso_after
from cwalld.http.keys import SCHEDULER, WALL
from cwalld.scheduler import Job, Scheduler
from cwalld.storage.sqlite import SQLiteStorage
from tests.conftest import Api, test_config


async def test_popular_job_threshold_badge_once_and_fresh_caches(api: Api) -> None:
    wall, scheduler = api.c.app[WALL], api.c.app[SCHEDULER]
    author_a, author_b = await api.register("yazar_a"), await api.register("yazar_b")
    ids = {}
    for token, n in ((author_a, 99), (author_a, 100), (author_b, 150)):
        cid = (await (await api.post(token, content=f"Beğenilecek itiraf, hedef {n}.")).json())["confession"]["id"]
        await api.wait_status(cid, token)
        await fans(wall.storage, cid, n, age_hours=48)
        ids[n] = cid
    assert (await (await api.c.get("/api/v1/confessions/popular")).json())["items"] == []  # now cached, empty
    await api.c.get("/api/v1/confessions")

    results = [await scheduler.run_now("popular") for _ in range(3)]
    assert results[0] == {"newly_popular": 2, "badges_awarded": 2}
    assert results[1] == results[2] == {"newly_popular": 0, "badges_awarded": 0}

    popular = (await (await api.c.get("/api/v1/confessions/popular")).json())["items"]
    assert [c["id"] for c in popular] == [ids[150], ids[100]]  # fresh after the job, most empathy first
    feed = {c["id"]: c["is_popular"] for c in (await (await api.c.get("/api/v1/confessions")).json())["items"]}
    assert feed == {ids[99]: False, ids[100]: True, ids[150]: True}
    for token in (author_a, author_b):
        badges = (await (await api.c.get("/api/v1/me", headers=api.auth(token))).json())["user"]["badges"]
        assert [(b["code"], b["name"]) for b in badges] == [("viral_confession", "Viral İtiraf")]
    stats = await (await api.c.get("/api/v1/stats")).json()
    assert stats["confessions"]["popular"] == 2


async def fans(storage: Any, cid: int, n: int, age_hours: float) -> None:
    """``n`` accounts made ``age_hours`` ago, each giving the confession empathy (straight into
    SQLite: registering through the API hashes a password each, and cannot make an old account)."""
    def op(db: Any) -> None:
        at = iso_after(-age_hours * 3600)
        for i in range(n):
            user = db.execute("INSERT INTO users (username, password_hash, created_at) VALUES (?, 'x', ?) RETURNING id",
                              (f"fan_{cid}_{age_hours:g}_{i}", at)).fetchone()[0]
            db.execute("INSERT INTO empathies (confession_id, user_id, created_at) VALUES (?, ?, ?)", (cid, user, at))
    await storage.w.run(op, "fans")


async def test_popular_job_is_set_based(tmp_path: Path) -> None:
    s = SQLiteStorage(str(tmp_path / "p.db"))
    await s.open()
    statements: list[str] = []
    await s.w.set_trace_callback(statements.append)
    await s.mark_popular(100, ("viral_confession", "Viral İtiraf"), "9999")
    assert len([q for q in statements if not q.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]) == 2  # one per step
    await s.close()


class Counting:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls, self.fail_first = 0, fail_first

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("scripted failure")
        return {"call": self.calls}


async def open_storage(path: Path) -> SQLiteStorage:
    s = SQLiteStorage(str(path))
    await s.open()
    return s


async def test_fires_on_a_short_cron_and_survives_a_failing_run(tmp_path: Path) -> None:
    s = await open_storage(tmp_path / "s.db")
    job = Counting(fail_first=1)
    sched = Scheduler(s, [Job("tick", "* * * * * *", job)])  # every second
    await sched.start()
    await asyncio.sleep(3.2)
    await sched.stop()
    assert job.calls >= 3  # the catch-up run, then a tick a second; the failure stopped nothing
    rows = list(await s.r.fetch("SELECT error, result FROM job_runs ORDER BY id"))
    assert rows[0] == ("RuntimeError: scripted failure", None)
    assert all(error is None and result for error, result in rows[1:])
    last = (await sched.describe())[0]["last_run"]
    assert last["error"] is None and last["result"]["call"] == job.calls
    await s.close()


async def test_two_processes_run_each_tick_once(tmp_path: Path) -> None:
    a, b = await open_storage(tmp_path / "s.db"), await open_storage(tmp_path / "s.db")
    job = Counting()
    scheds = [Scheduler(st, [Job("tick", "* * * * * *", job)]) for st in (a, b)]
    for sc in scheds:
        await sc.start()
    await asyncio.sleep(3.2)
    for sc in scheds:
        await sc.stop()
    ticks = [r[0] for r in await a.r.fetch("SELECT scheduled_for FROM job_runs")]
    assert job.calls == len(ticks) == len(set(ticks)) >= 3
    await a.close()
    await b.close()


async def test_a_missed_tick_runs_once_at_start(tmp_path: Path) -> None:
    s = await open_storage(tmp_path / "s.db")
    job = Counting()
    for _ in range(3):  # three starts after the yearly tick: it runs at the first only
        sched = Scheduler(s, [Job("yearly", "0 0 1 1 *", job)], "Europe/Istanbul")
        await sched.start()
        await asyncio.sleep(0.2)
        await sched.stop()
    assert job.calls == 1
    (info,) = await sched.describe()
    assert info["next_run"].endswith("T21:00:00.000000Z")  # midnight in Istanbul is 21:00 UTC
    await s.close()


async def test_recovery_job_queues_lost_confessions(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = test_config(tmp_path, fake_ai.url, queue={"sweep_grace": 0.0},
                      scheduler={"recovery": "0 0 1 1 *"})  # not its every-minute tick: the test runs it
    api = Api(await make_client(cfg))
    wall = api.c.app[WALL]
    token = await api.register()
    user = await wall.accounts.authenticate(token)
    # a confession whose enqueue was lost (as if Redis had been down): stored, never queued
    c = await wall.storage.add_confession(user.id, "Kaybolan kuyruk işi burada.", "other", True, 5, "0")
    await asyncio.sleep(0.05)
    assert (await api.confession(c.id, token))["status"] == "pending"
    assert await api.c.app[SCHEDULER].run_now("recovery") == {"queued": 1}
    await api.wait_status(c.id, token)


async def test_a_fresh_database_runs_no_catch_up_jobs(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """A fresh database ran all its scheduled jobs at its first start; a restart still catches up."""
    yearly = "0 0 1 1 *"  # no job's tick comes during the test; each has a past one to catch up
    cfg = test_config(tmp_path, fake_ai.url, popular={"schedule": yearly}, backup={"schedule": yearly},
                      scheduler={"recovery": yearly, "queue_clean": yearly, "sessions_purge": yearly})
    client = await make_client(cfg)
    await Api(client).settled()
    await asyncio.sleep(0.3)
    assert [j["last_run"] for j in await client.app[SCHEDULER].describe()] == [None] * 5
    await client.close()
    client = await make_client(cfg)  # the same database, started again: the missed ticks run once
    await Api(client).settled()
    assert all(j["last_run"]["finished_at"] for j in await client.app[SCHEDULER].describe())
