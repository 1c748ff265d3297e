"""The storage contract. Every backend runs these same assertions (see the ``stores`` fixture).

"Across processes" here means three adapters, each with connections of its own, as three
daemons would have: the database cannot tell them apart from processes. The rules whose
exactness matters run at once from all three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cwalld.domain import LastAdmin, UsernameTaken, iso_after, now
from cwalld.storage import Storage
from cwalld.storage.postgres import PostgresStorage
from cwalld.storage.sqlite import SQLiteStorage

BACKENDS = ["sqlite", "postgres"]
BADGE = ("viral_confession", "Viral İtiraf")
Make = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=BACKENDS)
async def make(request: Any, tmp_path: Path) -> Any:
    """Open one more adapter on the test's database (the first one creates it)."""
    url = await request.getfixturevalue("postgres_server").empty() if request.param == "postgres" else None
    opened: list[Storage] = []

    async def open_one() -> Storage:
        s: Storage = PostgresStorage(url, pool_size=5) if url else SQLiteStorage(str(tmp_path / "wall.db"))
        await s.open()
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        await s.close()


@pytest.fixture
async def three(make: Make) -> list[Storage]:
    return [await make() for _ in range(3)]


async def users(s: Storage, n: int, prefix: str = "u", created_at: str | None = None) -> list[int]:
    return [(await s.create_user(f"{prefix}{i}", "hash", None, False)).id for i in range(n)]


async def published(s: Storage, author: int, content: str = "bir itiraf", anonymous: bool = True) -> int:
    c = await s.add_confession(author, content, "genel", anonymous, 100, "0")
    assert c is not None
    assert await s.finish(c.id, "published", "yanıt", False, None)
    return c.id


async def test_a_new_database_is_created_once_and_said_so(make: Make) -> None:
    first, second = await asyncio.gather(make(), make())  # two processes starting together
    assert sorted([first.created, second.created]) == [False, True]
    assert (await make()).created is False


async def test_users_sessions_and_taken_names(three: list[Storage]) -> None:
    a, b, _ = three
    u = await a.create_user("ayşe", "h1", "Ayşe", False)
    with pytest.raises(UsernameTaken):
        await b.create_user("ayşe", "h2", None, False)
    found = await b.credentials("ayşe")
    assert found is not None and found[0].id == u.id and found[1] == "h1" and found[0].name == "Ayşe"
    await a.create_session(u.id, "tok", iso_after(60))
    await a.create_session(u.id, "old", iso_after(-60))
    assert (await b.session_user("tok")) is not None and await b.session_user("old") is None
    assert await b.purge_sessions() == 1
    assert await a.set_password("ayşe", "h3") and not await a.set_password("nobody", "h")
    assert await b.session_user("tok") is None  # signed out everywhere
    assert (await a.credentials("ayşe"))[1] == "h3"  # type: ignore[index]


async def test_the_daily_limit_is_exact_across_processes(three: list[Storage]) -> None:
    (author,) = await users(three[0], 1)
    since = iso_after(-86400)
    made = await asyncio.gather(*(three[i % 3].add_confession(author, f"itiraf {i}", "genel", True, 5, since)
                                  for i in range(20)))
    assert sum(c is not None for c in made) == 5
    assert len(await three[1].by_author(author, 50, None)) == 5


async def test_empathy_counts_are_exact_across_processes(three: list[Storage]) -> None:
    people = await users(three[0], 51)
    cid = await published(three[0], people[0])
    others = people[1:]
    # every user twice, from different processes, all at once: idempotent and exact
    await asyncio.gather(*(three[i % 3].set_empathy(u, cid, True) for i, u in enumerate(others + others)))
    assert (await three[2].confession(cid)).empathy_count == 50  # type: ignore[union-attr]
    await asyncio.gather(*(three[i % 3].set_empathy(u, cid, False) for i, u in enumerate(others[:20] * 2)))
    c = await three[1].confession(cid)
    assert c is not None and c.empathy_count == 30
    assert await three[0].empathized(others[0], [cid]) == set() and await three[0].empathized(others[25], [cid]) == {cid}
    assert (await three[0].stats())["empathies"] == 30


async def test_a_confession_is_finished_once(three: list[Storage]) -> None:
    (author,) = await users(three[0], 1)
    c = await three[0].add_confession(author, "bir itiraf", "genel", True, 5, "0")
    assert c is not None and c.status == "pending" and c.author is None
    done = await asyncio.gather(*(s.finish(c.id, "published", f"yanıt {i}", False, None) for i, s in enumerate(three)))
    assert done.count(True) == 1
    assert (await three[0].confession(c.id)).ai_response == f"yanıt {done.index(True)}"  # type: ignore[union-attr]


async def test_one_scheduled_tick_runs_once_across_processes(three: list[Storage]) -> None:
    tick = now()
    claims = await asyncio.gather(*(s.claim_run("popular", tick, 60) for s in three))
    won = [c for c in claims if c is not None]
    assert len(won) == 1
    await three[1].finish_run(won[0], '{"n": 1}', None)
    assert await three[2].claim_run("popular", tick, 0) is None  # finished: never again
    assert (await three[0].last_run("popular"))["result"] == '{"n": 1}'  # type: ignore[index]
    stale = await three[0].claim_run("backup", tick, 60)
    assert stale is not None and await three[1].claim_run("backup", tick, 60) is None
    await asyncio.sleep(0.01)
    retaken = await asyncio.gather(*(s.claim_run("backup", tick, 0.005) for s in three))  # its run died
    assert len([c for c in retaken if c is not None]) == 1


async def test_popular_and_its_badge_once_across_processes(three: list[Storage]) -> None:
    people = await users(three[0], 4)
    named = await published(three[0], people[0], anonymous=False)
    await published(three[0], people[0])
    for u in people[1:]:
        await three[0].set_empathy(u, named, True)
    await three[0].set_empathy(people[0], named, True)  # the author's own does not count
    results = await asyncio.gather(*(s.mark_popular(3, BADGE, iso_after(60)) for s in three))
    assert sum(r["newly_popular"] for r in results) == 1 and sum(r["badges_awarded"] for r in results) == 1
    u = await three[1].user(people[0])
    assert u is not None and [b.code for b in u.badges] == ["viral_confession"]
    assert [c.id for c in await three[2].popular(10, "0")] == [named]
    assert (await three[0].mark_popular(3, BADGE, iso_after(60))) == {"newly_popular": 0, "badges_awarded": 0}


async def test_secrets_are_made_once_and_shared(three: list[Storage]) -> None:
    values = await asyncio.gather(*(s.secret(name) for s in three for name in ("owner", "cursor")))
    owner, cursor = set(values[0::2]), set(values[1::2])
    assert len(owner) == 1 and len(cursor) == 1 and owner != cursor


async def test_the_recovery_sweep_skips_held_confessions_until_their_time(three: list[Storage]) -> None:
    (author,) = await users(three[0], 1)
    ids = [c.id for c in [await three[0].add_confession(author, f"itiraf {i}", "genel", True, 9, "0") for i in range(3)]
           if c is not None]
    assert await three[1].pending_ids(iso_after(1)) == ids
    assert await three[1].pending_ids(iso_after(-60)) == []  # none old enough
    at = await three[2].hold(ids[0], 60, 3600)
    assert at is not None and at > now()
    assert await three[0].pending_ids(iso_after(1)) == ids[1:]
    assert await three[0].hold(ids[0], 60, 3600) > at  # type: ignore[operator]  # doubling
    await three[0].finish(ids[1], "published", "yanıt", True, None)
    assert await three[0].hold(ids[1], 60, 3600) is None  # no longer pending
    assert await three[1].fallback_ids("0") == [ids[1]]
    assert await three[2].replace_fallback(ids[1], "modelin yanıtı") and not await three[2].replace_fallback(ids[1], "x")


async def test_reports_hide_at_the_threshold_once_across_processes(three: list[Storage]) -> None:
    people = await users(three[0], 4)
    cid = await published(three[0], people[0])
    assert await three[0].add_report(people[0], cid, "kendi")  # the author's own report does not count
    await asyncio.gather(*(three[i].add_report(u, cid, None) for i, u in enumerate(people[1:3])))
    assert not await three[0].hide_if_reported(cid, 3, iso_after(60))
    assert await three[0].report_counts([cid]) == {cid: 3}
    assert [c.id for c in await three[1].by_status("reported", 10, None)] == [cid]
    await three[2].add_report(people[3], cid, None)
    assert not await three[2].hide_if_reported(cid, 3, iso_after(-3600))  # accounts too new do not count
    hidden = await asyncio.gather(*(s.hide_if_reported(cid, 3, iso_after(60)) for s in three))
    assert hidden.count(True) == 1
    assert not await three[0].add_report(people[1], cid, None)  # not published any more
    restored = await three[1].set_status(cid, ("hidden",), "published")
    assert restored is not None and restored.status == "published"
    assert await three[0].report_counts([cid]) == {}  # an admin decided: earlier reports no longer count


async def test_the_last_admin_stays_under_concurrent_revokes_and_deletions(three: list[Storage]) -> None:
    a = await three[0].create_user("a", "h", None, True)
    b = await three[0].create_user("b", "h", None, True)
    revoked = await asyncio.gather(three[1].set_admin("a", False), three[2].set_admin("b", False),
                                   return_exceptions=True)
    assert sum(isinstance(r, LastAdmin) for r in revoked) == 1
    assert (await three[0].stats())["users"] == 2
    admins = [u for u in (await three[0].user(a.id), await three[0].user(b.id)) if u is not None and u.is_admin]
    assert len(admins) == 1
    await three[0].set_admin("a", True)
    await three[0].set_admin("b", True)
    gone = await asyncio.gather(three[1].delete_user(a.id), three[2].delete_user(b.id), return_exceptions=True)
    assert sum(isinstance(r, LastAdmin) for r in gone) == 1 and (await three[0].stats())["users"] == 1
    assert await three[0].set_admin("nobody", True) is None


async def test_deleting_an_account_is_one_atomic_step(three: list[Storage]) -> None:
    gone, other = await users(three[0], 2)
    mine = await published(three[0], gone)
    theirs = await published(three[0], other)
    await three[0].set_empathy(other, mine, True)
    await three[0].set_empathy(gone, theirs, True)
    await three[0].add_report(other, mine, None)
    await three[0].create_session(gone, "tok", iso_after(60))
    exported = await three[1].export(gone)
    assert [c["id"] for c in exported["confessions"]] == [mine] and exported["confessions"][0]["anonymous"] is True
    assert [e["confession_id"] for e in exported["empathies"]] == [theirs] and len(exported["sessions"]) == 1
    removed = await three[1].delete_user(gone)
    assert removed is not None and removed.confessions == [(mine, "genel", "published")]
    assert removed.empathized == [(theirs, "genel")]
    assert await three[2].confession(mine) is None and await three[2].session_user("tok") is None
    assert (await three[2].confession(theirs)).empathy_count == 0  # type: ignore[union-attr]
    assert await three[0].delete_user(gone) is None


async def test_detaching_keeps_the_confessions_with_no_author(three: list[Storage]) -> None:
    (gone,) = await users(three[0], 1)
    cid = await published(three[0], gone, anonymous=False)
    assert (await three[0].confession(cid)).author is not None  # type: ignore[union-attr]
    await three[1].delete_user(gone, detach=True)
    c = await three[2].confession(cid)
    assert c is not None and c.author is None and c.author_id is None and c.anonymous


async def test_feeds_page_by_cursor_and_never_show_an_anonymous_author(three: list[Storage]) -> None:
    (author,) = await users(three[0], 1)
    ids = [await published(three[0], author, f"itiraf {i}", anonymous=i % 2 == 0) for i in range(5)]
    page = await three[1].feed(None, 2, None)
    assert [c.id for c in page] == [ids[4], ids[3]]
    rest = await three[1].feed(None, 10, (page[-1].published_at or "", page[-1].id))
    assert [c.id for c in page + rest] == ids[::-1]
    assert all((c.author is None) == c.anonymous for c in page + rest)
    assert await three[2].feed("başka", 10, None) == []
    mine = await three[2].by_author(author, 3, None)
    assert [c.id for c in mine] == ids[::-1][:3]
    assert await three[0].delete_confession(ids[0]) and not await three[0].delete_confession(ids[0])
    assert ids[0] not in [c.id for c in await three[1].feed(None, 10, None)]
    erased = await three[1].confession(ids[0])
    assert erased is not None and erased.content == "" and erased.ai_response is None
    pending = await three[0].add_confession(author, "bekleyen", "genel", True, 100, "0")
    assert pending is not None and [c.id for c in await three[1].by_status("pending", 10, None)] == [pending.id]
    stats = await three[2].stats()
    assert stats["confessions"] == {"total": 5, "pending": 1, "published": 4, "rejected": 0, "popular": 0}
    assert stats["by_category"] == {"genel": 4} and await three[0].oldest_since(author, "0") is not None
    await three[0].ping()
