"""Hostile input is normal input: every request the attacker's run answered with a 500 now gets
a clear 4xx in the usual error shape (issue 11 §1), checked through the one schema mechanism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cwalld.accounts import create_user
from cwalld.http.keys import WALL
from tests.conftest import Api, test_config


async def admin_token(api: Api) -> str:
    await create_user(api.c.app[WALL].storage, "patron", "password123", admin=True)
    r = await api.c.post("/api/v1/auth/login", json={"username": "patron", "password": "password123"})
    return str((await r.json())["token"])


async def expect_4xx(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    body = await r.json()
    assert r.status == status, (r.status, body)
    assert set(body["error"]) >= {"code", "message"}
    if code:
        assert body["error"]["code"] == code
    return dict(body)


@pytest.mark.parametrize("category", [["love"], {}, 7, None, True])
async def test_a_category_of_the_wrong_type_is_a_422(api: Api, category: Any) -> None:
    token = await api.register()
    r = await api.c.post("/api/v1/confessions", json={"content": "Bir itiraf metni burada.", "category": category},
                         headers=api.auth(token))
    body = await expect_4xx(r, 422, "validation_error")
    assert "category" in body["error"]["fields"]


@pytest.mark.parametrize("scope", [["x"], {}, 1, None])
async def test_a_cache_scope_of_the_wrong_type_is_a_422(api: Api, scope: Any) -> None:
    token = await admin_token(api)
    r = await api.c.post("/api/v1/admin/cache/clear", json={"scope": scope}, headers=api.auth(token))
    assert "scope" in (await expect_4xx(r, 422))["error"]["fields"]


@pytest.mark.parametrize("limit", ["²", "٣", "9" * 5000, "-1", "0", "51", "1.5", ""])
async def test_a_limit_that_is_not_a_small_integer_is_a_422(api: Api, limit: str) -> None:
    token = await api.register()
    admin = await admin_token(api)
    for path, who in (("/api/v1/confessions", token), ("/api/v1/confessions/popular", token),
                      ("/api/v1/me/confessions", token), ("/api/v1/admin/confessions?status=pending", admin)):
        sep = "&" if "?" in path else "?"
        r = await api.c.get(f"{path}{sep}limit={limit}", headers=api.auth(who))
        assert "limit" in (await expect_4xx(r, 422))["error"]["fields"], path


async def test_a_cursor_whose_id_overflows_64_bits_is_a_422(api: Api) -> None:
    import base64

    forged = base64.urlsafe_b64encode(b"2026-01-01T00:00:00.000000Z|" + b"9" * 30).decode().rstrip("=")
    r = await api.c.get(f"/api/v1/confessions?cursor={forged}")
    assert "cursor" in (await expect_4xx(r, 422))["error"]["fields"]


async def test_a_non_utf8_bearer_token_is_a_401_everywhere(api: Api, tmp_path: Path, make_client: Any) -> None:
    for path in ("/api/v1/confessions", "/api/v1/me", "/api/v1/confessions/popular"):
        r = await api.c.get(path, headers={"Authorization": "Bearer caf\udce9-x".encode("utf-8", "surrogateescape")
                                           .decode("latin-1")})
        await expect_4xx(r, 401, "unauthorized")
    guarded = Api(await make_client(test_config(tmp_path / "m", server={"metrics_token": "s3cret"})))
    r = await guarded.c.get("/metrics", headers={"Authorization": "Bearer ş\xe9"})
    await expect_4xx(r, 401)


async def test_empty_cursor_and_category_are_422_as_the_document_says(api: Api) -> None:
    doc = await (await api.c.get("/api/v1/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/confessions"]["get"]["parameters"]}
    assert params["cursor"]["minLength"] == 1 and "" not in params["category"]["enum"]
    for query in ("cursor=", "category="):
        await expect_4xx(await api.c.get(f"/api/v1/confessions?{query}"), 422)


async def test_report_needs_no_body_as_the_document_says(api: Api) -> None:
    doc = await (await api.c.get("/api/v1/openapi.json")).json()
    assert doc["paths"]["/api/v1/confessions/{id}/report"]["post"]["requestBody"]["required"] is False
    author, reader = await api.register(), await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    r = await api.c.post(f"/api/v1/confessions/{cid}/report", headers=api.auth(reader))
    assert r.status == 202


async def test_name_null_and_empty_content_follow_the_document(api: Api) -> None:
    r = await api.c.post("/api/v1/auth/register", json={"username": "adsiz", "password": "password123", "name": None})
    assert "name" in (await expect_4xx(r, 422))["error"]["fields"]
    doc = await (await api.c.get("/api/v1/openapi.json")).json()
    content = doc["paths"]["/api/v1/confessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert content["properties"]["content"]["minLength"] == 10


async def test_every_operation_has_an_id_and_a_tag(api: Api) -> None:
    doc = await (await api.c.get("/api/v1/openapi.json")).json()
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and all(ids)
    assert all(op["tags"] for path in doc["paths"].values() for op in path.values())
    assert "required" in doc["components"]["schemas"]["Confession"]


async def test_a_latin1_body_is_a_415(api: Api) -> None:
    token = await api.register()
    r = await api.c.post("/api/v1/confessions", data='{"content": "Bir itiraf metni.", "category": "love"}'.encode("latin-1"),
                         headers={**api.auth(token), "Content-Type": "application/json; charset=latin-1"})
    await expect_4xx(r, 415, "unsupported_media_type")


async def test_admin_answers_carry_no_badges(api: Api) -> None:
    """A badge's awarded_at equals the popular run that marked one anonymous confession: shown
    to an admin beside the username, it names the author (issue 11 §3)."""
    admin = await admin_token(api)
    await api.register("rozetli")
    r = await api.c.post("/api/v1/admin/users/rozetli/admin", headers=api.auth(admin))
    user = (await r.json())["user"]
    assert r.status == 200 and "badges" not in user and "created_at" not in user


async def test_the_last_admin_cannot_revoke_their_own_rights(api: Api) -> None:
    """A fuzzer did it and every later admin call got 403: the wall had no admin left."""
    admin = await admin_token(api)
    await expect_4xx(await api.c.delete("/api/v1/admin/users/patron/admin", headers=api.auth(admin)), 409, "last_admin")
    assert (await api.c.get("/api/v1/admin/queue", headers=api.auth(admin))).status == 200
    await api.register("ikinci")
    assert (await api.c.post("/api/v1/admin/users/ikinci/admin", headers=api.auth(admin))).status == 200
    r = await api.c.delete("/api/v1/admin/users/patron/admin", headers=api.auth(admin))
    assert r.status == 200 and (await r.json())["user"]["is_admin"] is False  # another admin remains


@pytest.mark.parametrize("content", ["\u200b" * 11, "Ters yazı \u202eiştiraf\u202c burada", "  önde boşluk var",
                                     "sonda boşluk var  ", "kontrol\x07karakteri var"])
async def test_invisible_bidi_and_control_characters_are_refused(api: Api, content: str) -> None:
    token = await api.register()
    r = await api.post(token, content=content)
    assert "content" in (await expect_4xx(r, 422))["error"]["fields"]


async def test_emoji_with_zwj_and_newlines_are_welcome(api: Api) -> None:
    token = await api.register()
    r = await api.post(token, content="Ailemle barıştım 👨\u200d👩\u200d👧\r\nÇok mutluyum.")
    assert r.status == 202
    assert (await r.json())["confession"]["content"] == "Ailemle barıştım 👨\u200d👩\u200d👧\nÇok mutluyum."


async def test_malformed_requests_are_one_rate_limited_line_not_tracebacks(tmp_path: Path, daemons: Any) -> None:
    """Each malformed HTTP request wrote a full ERROR traceback (2,000 → 1 MB of log): now one
    bad_request warning a second at most, with how many were suppressed."""
    import asyncio
    import time

    d = daemons(tmp_path)
    await d.start()
    before = d.log.stat().st_size

    async def bad(i: int) -> None:
        _, w = await asyncio.open_connection("127.0.0.1", d.port)
        w.write(b"GET /api/v1/confessions HTTP/1.1\r\nHost: x\r\nX-Bad: \x00" + str(i).encode() + b"\r\n\r\n")
        await w.drain()
        w.close()

    started = time.monotonic()
    for start in range(0, 2000, 100):
        await asyncio.gather(*(bad(i) for i in range(start, start + 100)))
    await asyncio.sleep(1.2)
    await bad(0)  # a later one is told again, with the count of those held back
    await asyncio.sleep(0.3)
    seconds = time.monotonic() - started
    log = d.log.read_text()[before:]
    lines = [line for line in log.splitlines() if '"bad_request"' in line]
    # one line a second at most (CI's slow runs took up to 8 s for the 2,000)
    assert "Traceback" not in log and 1 <= len(lines) <= seconds + 1, (seconds, log[:2000])
    assert '"suppressed":' in lines[-1] and len(log) < 5000, len(log)


async def test_forged_cursors_never_reach_the_cache(tmp_path: Path, daemons: Any) -> None:
    """Each distinct forged cursor was a new ~200 KB cache entry: 4,500 of them took the daemon
    from 49 MB to 1 GB. Cursors are signed now; a forged one is a 422 invalid_cursor before any
    cache or query (issue 11 §2)."""
    import asyncio
    import base64

    import aiohttp

    d = daemons(tmp_path, CWALLD_LOG_LEVEL="warning", CWALLD_LIMITS_DAILY_CONFESSIONS="1000")
    await d.start()
    assert d.proc is not None

    def rss_mb() -> float:
        for line in Path(f"/proc/{d.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    async with aiohttp.ClientSession() as s:
        async with s.post(d.url + "/api/v1/auth/register", json={"username": "yazar", "password": "password123"}) as r:
            token = (await r.json())["token"]
        for i in range(60):  # a wall whose pages are ~100 KB each
            async with s.post(d.url + "/api/v1/confessions", headers={"Authorization": f"Bearer {token}"},
                              json={"content": f"Uzun itiraf {i}: " + "ç" * 1900, "category": "other"}) as r:
                assert r.status == 202
        for _ in range(100):
            async with s.get(d.url + "/api/v1/confessions?limit=50") as r:
                if len((await r.json())["items"]) == 50:
                    break
            await asyncio.sleep(0.05)
        before = rss_mb()
        codes: dict[int, int] = {}

        async def forged(n: int) -> None:
            cursor = base64.urlsafe_b64encode(f"2099-01-01T00:00:00.{n:06d}Z|{n}".encode()).decode().rstrip("=")
            async with s.get(f"{d.url}/api/v1/confessions?limit=50&cursor={cursor}") as r:
                codes[r.status] = codes.get(r.status, 0) + 1
                if r.status == 422:
                    assert (await r.json())["error"]["code"] == "invalid_cursor"

        for start in range(0, 5000, 250):
            await asyncio.gather(*(forged(n) for n in range(start, start + 250)))
        grew = rss_mb() - before
    print(f"5,000 forged cursors: {codes}, RSS +{grew:.1f} MB")
    assert codes == {422: 5000}
    assert grew < 20


async def test_a_real_cursor_still_pages(api: Api) -> None:
    token = await api.register()
    for i in range(3):
        cid = (await (await api.post(token, content=f"Sayfalanacak itiraf numarası {i}.")).json())["confession"]["id"]
        await api.wait_status(cid, token)
    first = await (await api.c.get("/api/v1/confessions?limit=2")).json()
    second = await (await api.c.get(f"/api/v1/confessions?limit=2&cursor={first['next_cursor']}")).json()
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    tampered = first["next_cursor"][:-2] + ("AA" if not first["next_cursor"].endswith("AA") else "BB")
    r = await api.c.get(f"/api/v1/confessions?limit=2&cursor={tampered}")
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_cursor"


async def test_the_in_process_cache_is_bounded_in_bytes() -> None:
    from cwalld.cache.local import LocalCache

    cache = LocalCache(max_entries=10_000, max_bytes=10_000)
    for i in range(100):
        await cache.store(f"k{i}", b"x" * 1000, 60)
    assert cache.bytes <= 10_000 and await cache.get("k99") == b"x" * 1000 and await cache.get("k0") is None


@pytest.mark.parametrize("name", ["\u202eyazar", "ad\u2066soyad\u2069", "görünmez\u200b", "zil\x07"])
async def test_no_bidi_or_control_character_reaches_a_response_through_a_name(api: Api, name: str) -> None:
    r = await api.c.post("/api/v1/auth/register", json={"username": "isimli", "password": "password123", "name": name})
    assert "name" in (await expect_4xx(r, 422))["error"]["fields"]
