"""Backups while the daemon serves, scheduled ones, and putting one back (issue 17 §4)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import cwalld


def rows(db: Path, sql: str) -> list[Any]:
    c = sqlite3.connect(db)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


async def test_a_backup_under_load_holds_everything_committed_before_it_and_restores(
        tmp_path: Path, daemons: Any, fake_ai: Any) -> None:
    live = tmp_path / "live"
    live.mkdir()
    d = daemons(live, OPENAI_API_KEY="k", CWALLD_AI_BASE_URL=fake_ai.url, CWALLD_LIMITS_DAILY_CONFESSIONS="1000")
    await d.start()
    accepted: list[tuple[float, int]] = []  # (when the 202 came, id)
    stop = asyncio.Event()

    async def client(s: aiohttp.ClientSession, n: int) -> None:
        r = await s.post(d.url + "/api/v1/auth/register", json={"username": f"yazar_{n}", "password": "password123"})
        auth = {"Authorization": "Bearer " + (await r.json())["token"]}
        i = 0
        while not stop.is_set():
            i += 1
            r = await s.post(d.url + "/api/v1/confessions", headers=auth,
                             json={"content": f"Yedek alınırken yazılan itiraf {n}-{i}.", "category": "other"})
            assert r.status == 202, await r.text()
            accepted.append((asyncio.get_running_loop().time(), (await r.json())["confession"]["id"]))

    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
        clients = [asyncio.create_task(client(s, n)) for n in range(50)]
        while len(accepted) < 200:  # everyone is signed up and posting
            await asyncio.sleep(0.05)
        began = loop.time()
        target = tmp_path / "yedek" / "cwall-manual.db"
        made = await asyncio.to_thread(cwalld, "backup", str(target), cwd=live, env=d.env)
        ended = loop.time()
        await asyncio.sleep(0.5)  # writes go on after it
        stop.set()
        await asyncio.gather(*clients)
    assert made.returncode == 0, made.stderr
    assert "by the running daemon; integrity ok" in made.stdout
    before = {cid for at, cid in accepted if at < began}
    during_or_after = {cid for at, cid in accepted if at > ended}
    copied = {cid for (cid,) in rows(target, "SELECT id FROM confessions")}
    assert len(before) > 50 and before <= copied, len(before - copied)  # nothing committed before it is missing
    assert during_or_after and not during_or_after <= copied  # the daemon kept taking writes meanwhile
    assert rows(target, "PRAGMA integrity_check") == [("ok",)]
    assert target.stat().st_mode & 0o777 == 0o600
    print(made.stdout)

    # restore it into a fresh directory: a new machine after the old disk died
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = {**d.env, "CWALLD_SERVER_PORT": "1"}  # nothing runs there
    put = await asyncio.to_thread(cwalld, "restore", str(target), cwd=fresh, env=env)
    assert put.returncode == 0, put.stderr
    restored = daemons(fresh, OPENAI_API_KEY="k", CWALLD_AI_BASE_URL=fake_ai.url)
    await restored.start()
    async with aiohttp.ClientSession() as s:
        total = (await (await s.get(restored.url + "/api/v1/stats")).json())
        assert total["confessions"]["total"] == len(copied), total
        assert total["users"] == rows(target, "SELECT count(*) FROM users")[0][0]
        for _ in range(600):  # what was pending in the backup is queued again at start and published
            feed = await (await s.get(restored.url + "/api/v1/confessions?limit=50")).json()
            if (await (await s.get(restored.url + "/api/v1/stats")).json())["confessions"]["pending"] == 0:
                break
            await asyncio.sleep(0.1)
    assert rows(fresh / "data" / "cwall.db", "SELECT count(*) FROM confessions WHERE status = 'published'") == [(len(copied),)]
    assert feed["items"]
    refused = await asyncio.to_thread(cwalld, "restore", str(target), cwd=fresh, env=restored.env)
    assert refused.returncode == 1 and "the daemon is running" in refused.stderr  # never under a running daemon
    await restored.stop()
    again = await asyncio.to_thread(cwalld, "restore", str(target), cwd=fresh, env=env)  # the old one is kept aside
    assert again.returncode == 0 and (fresh / "data" / "cwall.db.before-restore").exists()


def test_without_a_daemon_the_file_is_backed_up_directly_and_a_bad_backup_is_refused(tmp_path: Path) -> None:
    assert cwalld("user", "create", "tek", "--password-stdin", input="password123\n", cwd=tmp_path).returncode == 0
    made = cwalld("backup", "b.db", cwd=tmp_path)
    assert made.returncode == 0 and "from the database file (no daemon running)" in made.stdout, made
    assert "users 1" in made.stdout and rows(tmp_path / "b.db", "SELECT username FROM users") == [("tek",)]
    (tmp_path / "bozuk.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    bad = cwalld("restore", "bozuk.db", cwd=tmp_path)
    assert bad.returncode == 1 and "restore failed" in bad.stderr
    assert rows(tmp_path / "data" / "cwall.db", "SELECT username FROM users") == [("tek",)]  # untouched


async def test_the_scheduled_backup_keeps_only_the_newest(tmp_path: Path, daemons: Any) -> None:
    d = daemons(tmp_path, CWALLD_BACKUP_KEEP="2", CWALLD_BACKUP_DIR=str(tmp_path / "yedekler"))
    await d.start()
    for _ in range(3):
        ran = await asyncio.to_thread(cwalld, "jobs", "run", "backup", "--json", cwd=tmp_path, env=d.env)
        assert ran.returncode == 0, ran.stderr
        await asyncio.sleep(1.1)  # backups are named by the second
    kept = sorted(p.name for p in (tmp_path / "yedekler").glob("*.db"))
    assert len(kept) == 2 and all(name.startswith("cwall-") for name in kept), kept
    listed = await asyncio.to_thread(cwalld, "jobs", "list", "--json", cwd=tmp_path, env=d.env)
    job = next(j for j in __import__("json").loads(listed.stdout)["jobs"] if j["name"] == "backup")
    assert job["schedule"] == "30 3 * * *" and job["last_run"]["result"]["pruned"] == 1
    assert job["last_run"]["result"]["file"].endswith(kept[-1])
