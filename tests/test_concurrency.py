"""Limits and counters stay exact under concurrent requests; paging never skips or repeats."""

from __future__ import annotations

import asyncio

from tests.conftest import Api, test_config


async def test_20_concurrent_posts_with_limit_5_accept_exactly_5(api: Api) -> None:
    token = await api.register()
    statuses = [r.status for r in await asyncio.gather(*(api.post(token) for _ in range(20)))]
    assert statuses.count(202) == 5 and statuses.count(429) == 15
    mine = await (await api.c.get("/api/v1/me/confessions?limit=50", headers=api.auth(token))).json()
    assert len(mine["items"]) == 5


async def test_50_users_empathising_concurrently_count_exactly_50(api: Api) -> None:
    author = await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    tokens = await asyncio.gather(*(api.register() for _ in range(50)))
    path = f"/api/v1/confessions/{cid}/empathy"
    # every user twice, all at once: idempotent and exact
    rs = await asyncio.gather(*(api.c.put(path, headers=api.auth(t)) for t in tokens + tokens))
    assert {r.status for r in rs} == {200}
    assert (await api.confession(cid))["empathy_count"] == 50
    assert (await (await api.c.get("/api/v1/stats")).json())["empathies"] == 50
    rs = await asyncio.gather(*(api.c.delete(path, headers=api.auth(t)) for t in tokens[:20] * 2))
    assert {r.status for r in rs} == {200}
    assert (await api.confession(cid))["empathy_count"] == 30


async def test_paging_while_publishing_never_skips_or_repeats(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, limits={"daily_confessions": 100})))
    token = await api.register()
    first = [(await (await api.post(token, content=f"İlk dalga itiraf numarası {i}")).json())["confession"]["id"]
             for i in range(30)]
    for cid in first:
        await api.wait_status(cid, token)

    async def keep_publishing() -> list[int]:
        ids = []
        for i in range(30):
            ids.append((await (await api.post(token, content=f"İkinci dalga itiraf numarası {i}")).json())["confession"]["id"])
            await asyncio.sleep(0.005)
        return ids

    publisher = asyncio.create_task(keep_publishing())
    seen: list[int] = []
    cursor = None
    while True:
        url = "/api/v1/confessions?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = await (await api.c.get(url)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        await asyncio.sleep(0.01)
        if cursor is None:
            break
    second = await publisher
    assert len(seen) == len(set(seen)), "an item was repeated"
    assert set(first) <= set(seen), "an item published before paging began was skipped"
    assert set(seen) <= set(first) | set(second)
    # order is newest published first
    for cid in second:
        await api.wait_status(cid, token)
    full = await (await api.c.get("/api/v1/confessions?limit=50")).json()
    published = [c["published_at"] for c in full["items"]]
    assert published == sorted(published, reverse=True) and len(full["items"]) == 50
