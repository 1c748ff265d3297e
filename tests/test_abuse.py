"""Reports and popularity cannot be gamed by fresh accounts or by the author (issue 12 §6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cwalld.domain import iso_after
from cwalld.http.keys import SCHEDULER, WALL
from tests.conftest import Api, test_config
from tests.test_scheduler import fans


async def age(api: Api, token: str, hours: float) -> None:
    """Make the token's account ``hours`` old (time cannot be waited for in a test)."""
    me = (await (await api.c.get("/api/v1/me", headers=api.auth(token))).json())["user"]
    await api.c.app[WALL].storage.w.execute("UPDATE users SET created_at = ? WHERE id = ?", (iso_after(-hours * 3600), me["id"]))


async def test_fresh_accounts_and_the_author_cannot_hide_a_confession_by_reports(tmp_path: Path, fake_ai: Any,
                                                                                  make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, moderation={"auto_hide_reports": 3})))
    author = await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    report = lambda t: api.c.post(f"/api/v1/confessions/{cid}/report", headers=api.auth(t), json={})  # noqa: E731
    for _ in range(5):  # five brand-new accounts: the seed hid it here
        assert (await report(await api.register())).status == 202
    await age(api, author, 48)
    assert (await report(author)).status == 202  # the author's own report never counts
    veterans = [await api.register() for _ in range(3)]
    for token in veterans:
        await age(api, token, 23)  # not old enough either
        assert (await report(token)).status == 202
    assert (await api.confession(cid))["status"] == "published"
    for token in veterans:
        await age(api, token, 25)
    assert (await report(veterans[0])).status == 202  # counted again at the next report: 3 old accounts
    assert (await api.confession(cid)) == {"http_status": 404}


async def test_only_empathy_from_older_accounts_makes_a_confession_popular(tmp_path: Path, fake_ai: Any,
                                                                           make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, popular={"threshold": 3})))
    storage, run = api.c.app[WALL].storage, lambda: api.c.app[SCHEDULER].run_now("popular")
    author = await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    await age(api, author, 48)
    for token in [author] + [await api.register() for _ in range(5)]:  # the author and five fresh accounts
        assert (await api.c.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(token))).status == 200
    await fans(storage, cid, 2, age_hours=30)
    assert (await run()) == {"newly_popular": 0, "badges_awarded": 0}  # 8 in all, 2 that count
    await fans(storage, cid, 1, age_hours=25)
    assert (await run()) == {"newly_popular": 1, "badges_awarded": 1}
    c = await api.confession(cid)
    assert c["is_popular"] is True and c["empathy_count"] == 9  # the total is still what is shown


async def test_popular_lists_the_window_and_badges_stay(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    async def setup(window: int) -> tuple[Api, str, list[int]]:
        api = Api(await make_client(test_config(tmp_path / str(window), fake_ai.url,
                                                popular={"threshold": 1, "window_days": window})))
        author = await api.register()
        ids = []
        for n, days in ((1, 10), (3, 2), (2, 0)):
            cid = (await (await api.post(author, content=f"Penceredeki itiraf, {days} gün önce.")).json())["confession"]["id"]
            await api.wait_status(cid, author)
            await fans(api.c.app[WALL].storage, cid, n, age_hours=48)
            await api.c.app[WALL].storage.w.execute("UPDATE confessions SET published_at = ? WHERE id = ?",
                                                    (iso_after(-days * 86400 - 60), cid))
            ids.append(cid)
        assert (await api.c.app[SCHEDULER].run_now("popular"))["newly_popular"] == 3
        return api, author, ids

    (tmp_path / "7").mkdir()
    (tmp_path / "0").mkdir()
    api, author, (old, top, new) = await setup(7)
    popular = (await (await api.c.get("/api/v1/confessions/popular")).json())["items"]
    assert [c["id"] for c in popular] == [top, new]  # within 7 days, most empathy first
    assert (await api.confession(old))["is_popular"] is True  # it stays popular, just off the list
    badges = (await (await api.c.get("/api/v1/me", headers=api.auth(author))).json())["user"]["badges"]
    assert [b["code"] for b in badges] == ["viral_confession"]
    api, _, (old, top, new) = await setup(0)  # 0: all time
    assert [c["id"] for c in (await (await api.c.get("/api/v1/confessions/popular")).json())["items"]] == [top, new, old]
