"""The HTTP API: every endpoint, every error code, anonymity, and the OpenAPI document."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, Api, test_config


async def test_health_categories_and_request_id(api: Api) -> None:
    r = await api.c.get("/healthz")
    assert r.status == 200 and await r.json() == {"status": "ok"}
    first = r.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{20}", first)
    assert (await api.c.get("/healthz")).headers["X-Request-ID"] != first
    r = await api.c.get("/api/v1/categories", headers={"X-Request-ID": "trace-123"})
    assert r.headers["X-Request-ID"] == "trace-123"
    slugs = [c["slug"] for c in (await r.json())["categories"]]
    assert slugs[:2] == ["love", "night_attack"] and "other" in slugs and len(slugs) == 9


async def test_register_login_me_logout(api: Api) -> None:
    r = await api.c.post("/api/v1/auth/register", json={"username": "zeynep", "password": "password123", "name": "Z"})
    assert r.status == 201
    body = await r.json()
    assert body["user"]["username"] == "zeynep" and body["user"]["name"] == "Z" and body["user"]["badges"] == []
    assert set(body["user"]) == {"id", "username", "name", "image", "is_admin", "badges", "created_at"}

    r = await api.c.post("/api/v1/auth/register", json={"username": "zeynep", "password": "password123"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "username_taken"

    r = await api.c.post("/api/v1/auth/login", json={"username": "zeynep", "password": "wrong-password"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    r = await api.c.post("/api/v1/auth/login", json={"username": "zeynep", "password": "password123"})
    assert r.status == 200
    token = (await r.json())["token"]

    r = await api.c.get("/api/v1/me", headers=api.auth(token))
    assert (await r.json())["user"]["username"] == "zeynep"
    r = await api.c.post("/api/v1/auth/logout", headers=api.auth(token))
    assert r.status == 204
    r = await api.c.get("/api/v1/me", headers=api.auth(token))
    assert r.status == 401


@pytest.mark.parametrize("payload, field", [
    ({"username": "ab", "password": "password123"}, "username"),
    ({"username": "Has-Caps", "password": "password123"}, "username"),
    ({"username": "okname", "password": "short"}, "password"),
    ({"username": 12345, "password": "password123"}, "username"),
    ({"username": "okname", "password": ["password123"]}, "password"),
])
async def test_register_validation(api: Api, payload: dict, field: str) -> None:
    r = await api.c.post("/api/v1/auth/register", json=payload)
    assert r.status == 422
    error = (await r.json())["error"]
    assert error["code"] == "validation_error" and field in error["fields"]


async def test_unauthorized_and_bad_tokens(api: Api) -> None:
    for method, path in [("GET", "/api/v1/me"), ("POST", "/api/v1/confessions"), ("GET", "/api/v1/me/confessions"),
                         ("PUT", "/api/v1/confessions/1/empathy"), ("DELETE", "/api/v1/confessions/1"),
                         ("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/admin/queue")]:
        r = await api.c.request(method, path)
        assert r.status == 401, (method, path)
        assert (await r.json())["error"]["code"] == "unauthorized"
    r = await api.c.get("/api/v1/confessions", headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    r = await api.c.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    assert r.status == 401


async def test_bad_bodies_get_clear_errors(api: Api) -> None:
    token = await api.register()
    h = api.auth(token)
    r = await api.c.post("/api/v1/confessions", data=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    r = await api.c.post("/api/v1/confessions", data=b"content=x", headers={**h, "Content-Type": "text/plain"})
    assert r.status == 415 and (await r.json())["error"]["code"] == "unsupported_media_type"
    r = await api.c.post("/api/v1/confessions", json=["a", "list"], headers=h)
    assert r.status == 422 and "body" in (await r.json())["error"]["fields"]
    big = b'{"content": "' + b"a" * 20000 + b'", "category": "love"}'
    r = await api.c.post("/api/v1/confessions", data=big, headers={**h, "Content-Type": "application/json"})
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"
    r = await api.post(token, content=123, category="nope", anonymous="yes")
    assert r.status == 422
    assert set((await r.json())["error"]["fields"]) == {"content", "category", "anonymous"}
    for content in ["too short", "x" * 2001, "has a \x07 bell in the middle", "   \n\n   "]:
        r = await api.post(token, content=content)
        assert r.status == 422, content
    # the process kept serving through all of it
    r = await api.c.get("/healthz")
    assert r.status == 200


async def test_not_found_and_method_not_allowed(api: Api) -> None:
    r = await api.c.get("/api/v1/nowhere")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await api.c.get("/api/v1/confessions/999")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await api.c.get("/api/v1/confessions/99999999999999999999999")
    assert r.status == 404
    r = await api.c.patch("/api/v1/confessions")
    assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]


async def test_error_messages_follow_accept_language_and_codes_do_not(api: Api) -> None:
    token = await api.register("dil_testi")
    tr = {"Accept-Language": "tr-TR,tr;q=0.9,en;q=0.8"}
    cases = [  # (request, code, English message, Turkish message)
        (("post", "/api/v1/auth/login", {"username": "dil_testi", "password": "yanlis-parola"}, {}),
         "unauthorized", "wrong username or password", "Kullanıcı adı ya da parola yanlış."),
        (("get", "/api/v1/confessions/999", None, {}), "not_found", "no such confession", "Böyle bir itiraf yok."),
        (("post", "/api/v1/confessions", {"content": "kısa", "category": "love"}, api.auth(token)),
         "validation_error", "content: at least 10 characters", "content: en az 10 karakter"),
        (("patch", "/api/v1/confessions", None, {}), "method_not_allowed", "PATCH is not allowed here",
         "Burada PATCH kullanılamaz."),
    ]
    for (method, path, body, headers), code, english, turkish in cases:
        for extra, message in (({}, english), ({"Accept-Language": "en-GB,tr;q=0.5"}, english), (tr, turkish)):
            r = await getattr(api.c, method)(path, json=body, headers={**headers, **extra})
            error = (await r.json())["error"]
            assert (error["code"], error["message"]) == (code, message), (path, extra)
    r = await api.c.post("/api/v1/confessions", json={"content": 5, "category": "nope"}, headers={**api.auth(token), **tr})
    assert (await r.json())["error"]["fields"] == {"content": "metin olmalı", "category": "şunlardan biri: " + ", ".join(
        c["slug"] for c in (await (await api.c.get("/api/v1/categories")).json())["categories"])}


def test_every_message_the_code_raises_has_its_turkish_form() -> None:
    """A new English message without a rule would reach a Turkish reader as the code's generic
    sentence: every literal message in cwalld/ must match a rule."""
    from cwalld.http.messages import _RULES
    literal = re.compile(r"""(?:(?:NotFound|Forbidden|Unauthorized|LastAdmin)\(|ApiError\(\d+, |TooMany\("\w+", )"""
                         r""""([^"{]+)"|Invalid\(\{"[\w-]+": "([^"{]+)"\}\)""")
    messages = {m.group(1) or m.group(2) for f in (ROOT / "cwalld").rglob("*.py") for m in literal.finditer(f.read_text())}
    assert len(messages) > 30
    assert [m for m in messages if not any(rule.fullmatch(m) for rule, _ in _RULES)] == []


async def test_content_is_normalised_and_surrounding_space_refused(api: Api) -> None:
    """Checked as sent (so the published schema is exact), stored NFC with plain newlines."""
    token = await api.register()
    r = await api.post(token, content="Cafe\u0301de buluştuk\r\nve konuştuk.")
    assert r.status == 202
    c = (await r.json())["confession"]
    assert c["content"] == "Caf\u00e9de buluştuk\nve konuştuk." and c["status"] == "pending"
    assert (await api.post(token, content="  Kenarlarında boşluk olan itiraf.  ")).status == 422


async def test_confession_lifecycle_and_feed(api: Api) -> None:
    token = await api.register()
    r = await api.post(token, category="school")
    assert r.status == 202
    cid = (await r.json())["confession"]["id"]
    c = await api.wait_status(cid, token)
    assert c["ai_response"] and c["ai_fallback"] is False and c["published_at"]
    r = await api.c.get("/api/v1/confessions")
    items = (await r.json())["items"]
    assert [i["id"] for i in items] == [cid]
    assert set(items[0]) == {"id", "content", "category", "status", "ai_response", "ai_fallback", "empathy_count",
                             "is_popular", "created_at", "published_at", "author", "empathized"}
    r = await api.c.get("/api/v1/confessions?category=school")
    assert [i["id"] for i in (await r.json())["items"]] == [cid]
    r = await api.c.get("/api/v1/confessions?category=love")
    assert (await r.json())["items"] == []
    r = await api.c.get("/api/v1/confessions?category=martian")
    assert r.status == 422
    for bad in ["0", "51", "ten", "-1"]:
        r = await api.c.get(f"/api/v1/confessions?limit={bad}")
        assert r.status == 422 and "limit" in (await r.json())["error"]["fields"]
    r = await api.c.get("/api/v1/confessions?cursor=garbage!")
    assert r.status == 422 and "cursor" in (await r.json())["error"]["fields"]

    r = await api.c.get("/api/v1/stats")
    stats = await r.json()
    assert stats["confessions"] == {"total": 1, "published": 1, "pending": 0, "rejected": 0, "popular": 0}
    assert stats["users"] == 1 and stats["by_category"] == {"school": 1} and stats["empathies"] == 0

    r = await api.c.get("/api/v1/confessions/popular")
    assert r.status == 200 and (await r.json()) == {"items": []}


async def test_empathy_put_delete_idempotent(api: Api, fake_ai) -> None:  # type: ignore[no-untyped-def]
    author = await api.register()
    reader = await api.register()
    fake_ai.latency = 0.3
    cid = (await (await api.post(author)).json())["confession"]["id"]
    r = await api.c.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
    assert r.status == 404  # still pending: only published confessions take empathy
    await api.wait_status(cid, author)
    for _ in range(2):
        r = await api.c.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
        assert await r.json() == {"empathy_count": 1, "empathized": True}
    c = await api.confession(cid, reader)
    assert c["empathized"] is True and c["empathy_count"] == 1
    r = await api.c.get("/api/v1/confessions", headers=api.auth(reader))
    assert (await r.json())["items"][0]["empathized"] is True
    r = await api.c.get("/api/v1/confessions", headers=api.auth(author))
    assert (await r.json())["items"][0]["empathized"] is False
    for _ in range(2):
        r = await api.c.delete(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
        assert await r.json() == {"empathy_count": 0, "empathized": False}
    r = await api.c.put("/api/v1/confessions/424242/empathy", headers=api.auth(reader))
    assert r.status == 404


async def test_delete_by_author_admin_and_others(api: Api, client) -> None:  # type: ignore[no-untyped-def]
    author, other = await api.register(), await api.register()
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    r = await api.c.delete(f"/api/v1/confessions/{cid}", headers=api.auth(other))
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    r = await api.c.delete(f"/api/v1/confessions/{cid}", headers=api.auth(author))
    assert r.status == 204
    assert (await api.confession(cid, author)) == {"http_status": 404}
    r = await api.c.get("/api/v1/confessions")
    assert (await r.json())["items"] == []
    r = await api.c.delete(f"/api/v1/confessions/{cid}", headers=api.auth(author))
    assert r.status == 404

    # an admin may delete anyone's
    from cwalld.http.keys import WALL
    from cwalld.accounts import create_user

    await create_user(client.app[WALL].storage, "boss", "password123", admin=True)
    r = await api.c.post("/api/v1/auth/login", json={"username": "boss", "password": "password123"})
    admin = (await r.json())["token"]
    cid2 = (await (await api.post(other)).json())["confession"]["id"]
    await api.wait_status(cid2, other)
    r = await api.c.delete(f"/api/v1/confessions/{cid2}", headers=api.auth(admin))
    assert r.status == 204


async def test_admin_queue_stats(api: Api, client) -> None:  # type: ignore[no-untyped-def]
    from cwalld.http.keys import WALL
    from cwalld.accounts import create_user

    user = await api.register()
    r = await api.c.get("/api/v1/admin/queue", headers=api.auth(user))
    assert r.status == 403
    await create_user(client.app[WALL].storage, "root_admin", "password123", admin=True)
    r = await api.c.post("/api/v1/auth/login", json={"username": "root_admin", "password": "password123"})
    admin = (await r.json())["token"]
    assert (await (await api.c.get("/api/v1/me", headers=api.auth(admin))).json())["user"]["is_admin"] is True
    cid = (await (await api.post(user)).json())["confession"]["id"]
    await api.wait_status(cid, user)
    r = await api.c.get("/api/v1/admin/queue", headers=api.auth(admin))
    assert await r.json() == {"waiting": 0, "active": 0, "delayed": 0, "completed": 1, "fallback": 0, "held": 0,
                              "failed": 0, "total": 1}


async def test_anonymous_author_is_seen_only_by_the_author(api: Api) -> None:
    author = await api.register("gizli_kisi", name="Gizli Kişi")
    reader = await api.register()
    anon = (await (await api.post(author)).json())["confession"]
    named = (await (await api.post(author, anonymous=False)).json())["confession"]
    await api.wait_status(anon["id"], author)
    await api.wait_status(named["id"], author)

    for headers in ({}, api.auth(reader)):
        feed = await (await api.c.get("/api/v1/confessions", headers=headers)).text()
        one = await (await api.c.get(f"/api/v1/confessions/{anon['id']}", headers=headers)).text()
        for text in (one, feed.split(f'"id":{anon["id"]},', 1)[1].split('"id":', 1)[0]):
            assert "gizli_kisi" not in text and "Gizli" not in text and "rejection_reason" not in text
        assert '"username":"gizli_kisi"' in feed  # the named one does show its author
    mine = await (await api.c.get("/api/v1/me/confessions", headers=api.auth(author))).json()
    assert [c["author"]["username"] for c in mine["items"]] == ["gizli_kisi", "gizli_kisi"]
    assert all("rejection_reason" in c for c in mine["items"])


async def test_login_rate_limit(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, auth={"login_attempts_per_minute": 3})))
    await api.register("limited")
    for _ in range(3):
        r = await api.c.post("/api/v1/auth/login", json={"username": "limited", "password": "wrong-password"})
        assert r.status == 401
    r = await api.c.post("/api/v1/auth/login", json={"username": "limited", "password": "password123"})
    assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_daily_limit_429_with_retry_after(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, limits={"daily_confessions": 2})))
    token = await api.register()
    assert [(await api.post(token)).status for _ in range(3)] == [202, 202, 429]
    r = await api.post(token)
    assert (await r.json())["error"]["code"] == "daily_limit"
    assert 86000 <= int(r.headers["Retry-After"]) <= 86400


async def test_cors(tmp_path, fake_ai, make_client) -> None:  # type: ignore[no-untyped-def]
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, server={"cors_origins": ["https://wall.example"]})))
    r = await api.c.options("/api/v1/confessions", headers={"Origin": "https://wall.example",
                                                            "Access-Control-Request-Method": "POST"})
    assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://wall.example"
    r = await api.c.get("/api/v1/categories", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_openapi_lists_exactly_the_routes(api: Api) -> None:
    doc = await (await api.c.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set()
    for route in api.c.app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info()  # type: ignore[union-attr]
        path = info.get("path") or re.sub(r"\{(\w+):[^}]*\}", r"{\1}", info["formatter"])
        if not path.startswith(("/api/docs", "/static/")) and path not in ("/", "/admin"):  # pages and their files
            served.add((route.method, path))
    assert documented == served
