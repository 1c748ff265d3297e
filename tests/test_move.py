"""`cwalld migrate`: a wall moves from its SQLite file to PostgreSQL whole, with its ids, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cwalld.domain import iso_after, now
from cwalld.storage import Storage
from cwalld.storage.postgres import PostgresStorage
from cwalld.storage.sqlite import SQLiteStorage
from tests.conftest import Postgres, cwalld

BADGE = ("viral_confession", "Viral İtiraf")


async def seed(path: str) -> None:
    s = SQLiteStorage(path)
    await s.open()
    people = [(await s.create_user(f"kisi_{i}", f"hash{i}", f"Kişi {i}" if i % 2 else None, i == 0)).id for i in range(6)]
    await s.create_session(people[1], "token-hash", iso_after(3600))
    ids = []
    for i in range(30):
        c = await s.add_confession(people[i % 6], f"Taşınan itiraf {i} — ğüşiöç", "love" if i % 2 else "work",
                                   anonymous=i % 3 != 0, daily_limit=100, since="0")
        assert c is not None
        ids.append(c.id)
        if i < 25:
            await s.finish(c.id, "published", f"yanıt {i}", i % 5 == 0, None)
    await s.finish(ids[25], "rejected", None, False, "blocked_term")
    await s.delete_confession(ids[3])
    for u in people[1:5]:
        await s.set_empathy(u, ids[0], True)
        await s.set_empathy(u, ids[1], True)
    await s.add_report(people[2], ids[4], "spam")
    await s.mark_popular(3, BADGE, iso_after(60))
    run = await s.claim_run("popular", now(), 60)
    assert run is not None
    await s.finish_run(run, '{"newly_popular": 2}', None)
    await s.secret("owner")
    await s.hold(ids[27], 60, 3600)
    await s.close()


async def snapshot(s: Storage) -> dict[str, object]:
    feed = await s.feed(None, 100, None)
    return {
        "feed": feed, "stats": await s.stats(), "pending": await s.pending_ids(iso_after(7200)),
        "rejected": await s.by_status("rejected", 10, None), "reported": await s.report_counts([c.id for c in feed]),
        "users": [await s.credentials(f"kisi_{i}") for i in range(6)], "session": await s.session_user("token-hash"),
        "secret": await s.secret("owner"), "run": await s.last_run("popular"), "popular": await s.popular(10, "0"),
        "mine": await s.by_author(1, 100, None), "export": await s.export(2),
    }


def test_a_wall_moves_whole_and_only_into_an_empty_database(tmp_path: Path, postgres_server: Postgres) -> None:
    db = str(tmp_path / "wall.db")
    asyncio.run(seed(db))
    url = asyncio.run(postgres_server.empty())
    r = cwalld("migrate", "--from", f"sqlite:{db}", "--to", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "counts verified" in r.stdout and "confessions 30" in r.stdout and "empathies 8" in r.stdout, r.stdout

    async def compare() -> None:
        old, new = SQLiteStorage(db), PostgresStorage(url)
        await old.open()
        await new.open()
        try:
            assert await snapshot(new) == await snapshot(old)
            c = await new.add_confession(1, "Taşındıktan sonra ilk itiraf", "work", True, 100, "0")
            assert c is not None and c.id == 31  # ids go on after the copied ones
            user = await new.create_user("yeni", "h", None, False)
            assert user.id == 7
            await new.set_empathy(user.id, 1, True)  # the empathy trigger counts again
            assert (await new.confession(1)).empathy_count == 5  # type: ignore[union-attr]
        finally:
            await old.close()
            await new.close()

    asyncio.run(compare())
    again = cwalld("migrate", "--from", f"sqlite:{db}", "--to", url, cwd=tmp_path)
    assert again.returncode == 1 and "not empty" in again.stderr, again
    wrong = cwalld("migrate", "--from", db, "--to", url, cwd=tmp_path)
    assert wrong.returncode == 2 and "--from sqlite:PATH" in wrong.stderr
    missing = cwalld("migrate", "--from", f"sqlite:{tmp_path / 'none.db'}", "--to", url, cwd=tmp_path)
    assert missing.returncode == 1 and "no SQLite database" in missing.stderr
