"""People's own data: the export of everything the wall keeps about them, and leaving (issue 17 §1, §2)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
import structlog

from cwalld import config as configmod, logs
from cwalld.app import DAEMON
from cwalld.http.keys import SCHEDULER
from cwalld.storage.sqlite import SQLiteStorage, _migrations
from tests.conftest import Api, cwalld, test_config
from tests.test_live import next_event


async def test_an_export_holds_everything_about_the_caller_and_nothing_of_anyone_else(
        tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(configmod.replace(test_config(tmp_path, fake_ai.url), privacy={"exports_per_day": 2},
                                                  moderation={"report_min_account_age_hours": 0})))
    ayse, bora = await api.register("ayse_veri"), await api.register("bora_baska")
    secret = (await (await api.post(ayse, "Kimse bilmiyor ama bu benim gizli itirafım.")).json())["confession"]["id"]
    named = (await (await api.post(ayse, "Bunu adımla yazıyorum, saklamıyorum.", anonymous=False)).json())["confession"]["id"]
    other = (await (await api.post(bora, "Bora'nın kimseye söylemediği başka bir şey.")).json())["confession"]["id"]
    for cid, token in ((secret, ayse), (named, ayse), (other, bora)):
        await api.wait_status(cid, token)
    assert (await api.c.put(f"/api/v1/confessions/{other}/empathy", headers=api.auth(ayse))).status == 200
    assert (await api.c.post(f"/api/v1/confessions/{other}/report", json={"reason": "spam gibi"},
                             headers=api.auth(ayse))).status == 202
    assert (await api.c.put(f"/api/v1/confessions/{secret}/empathy", headers=api.auth(bora))).status == 200

    r = await api.c.get("/api/v1/me/export", headers=api.auth(ayse))
    assert r.status == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="cwall-export-ayse_veri.json"'
    assert r.headers["Cache-Control"] == "no-store"
    data = await r.json()
    assert data["user"]["username"] == "ayse_veri" and data["exported_at"].endswith("Z")
    mine = {c["id"]: c for c in data["confessions"]}
    assert set(mine) == {secret, named}  # the anonymous one too: she is its author
    assert mine[secret]["anonymous"] is True and mine[named]["anonymous"] is False
    assert mine[secret]["status"] == "published" and mine[secret]["ai_response"] and mine[secret]["empathy_count"] == 1
    assert [e["confession_id"] for e in data["empathies"]] == [other]
    assert [(x["confession_id"], x["reason"]) for x in data["reports"]] == [(other, "spam gibi")]
    assert len(data["sessions"]) == 1 and set(data["sessions"][0]) == {"created_at", "expires_at"}
    text = await r.text()
    for never in (ayse, hashlib.sha256(ayse.encode()).hexdigest(), "bora_baska", "Bora'nın", bora):
        assert never not in text  # no token, no token hash, nothing of another user

    assert (await api.c.get("/api/v1/me/export", headers=api.auth(ayse))).status == 200
    third = await api.c.get("/api/v1/me/export", headers={**api.auth(ayse), "Accept-Language": "tr"})
    error = (await third.json())["error"]
    assert third.status == 429 and int(third.headers["Retry-After"]) > 0
    assert error == {"code": "rate_limited", "message": "Günde en çok 2 kez veri dışa aktarılabilir."}
    assert (await api.c.get("/api/v1/me/export", headers=api.auth(bora))).status == 200  # per person
    assert (await api.c.get("/api/v1/me/export")).status == 401


async def test_deleting_an_account_takes_everything_about_it_and_the_wall_follows(
        tmp_path: Path, fake_ai: Any, make_client: Any, redis_server: Any, redis_prefix: str) -> None:
    cfg = configmod.replace(test_config(tmp_path, fake_ai.url), redis={"url": redis_server.url, "prefix": redis_prefix},
                            moderation={"report_min_account_age_hours": 0})
    client = await make_client(cfg)
    api = Api(client)
    ayse, bora = await api.register("ayse_gidiyor"), await api.register("bora_kaliyor")
    gone = [(await (await api.post(ayse, text, anonymous=anon)).json())["confession"]["id"]
            for text, anon in (("Giderken bu anonim itirafı da götüreceğim.", True), ("Adımla yazdığım bir itiraf.", False))]
    stays = (await (await api.post(bora, "Bora'nın duvarda kalacak itirafı.")).json())["confession"]["id"]
    for cid, token in ((gone[0], ayse), (gone[1], ayse), (stays, bora)):
        await api.wait_status(cid, token)
    storage = client.app[DAEMON].storage
    ayse_id = (await (await client.get("/api/v1/me", headers=api.auth(ayse))).json())["user"]["id"]
    await storage.w.run(lambda db: db.execute("INSERT INTO badges VALUES (?, 'viral', 'Viral İtiraf', '2026-01-01T00:00:00Z')",
                                              (ayse_id,)))
    assert (await client.put(f"/api/v1/confessions/{stays}/empathy", headers=api.auth(ayse))).status == 200
    assert (await client.post(f"/api/v1/confessions/{stays}/report", headers=api.auth(ayse))).status == 202
    assert (await client.put(f"/api/v1/confessions/{gone[0]}/empathy", headers=api.auth(bora))).status == 200
    assert len((await (await client.get("/api/v1/confessions")).json())["items"]) == 3  # cached with all three
    before = await (await client.get("/api/v1/stats")).json()
    stream = await client.get("/api/v1/events")

    me = {"Authorization": f"Bearer {ayse}"}
    assert (await client.delete("/api/v1/me", headers=me, json={"password": "yanlis-parola"})).status == 403
    assert (await client.delete("/api/v1/me", headers=me, json={})).status == 422
    assert (await client.delete("/api/v1/me", json={"password": "password123"})).status == 401
    with structlog.testing.capture_logs() as logs:
        r = await client.delete("/api/v1/me", headers=me, json={"password": "password123"})
    assert r.status == 204
    assert (await client.get("/api/v1/me", headers=me)).status == 401  # every session went with it

    seen = [await next_event(stream) for _ in range(3)]
    assert sorted((e["event"], e["data"]["id"]) for e in seen) == sorted(
        [("removed", gone[0]), ("removed", gone[1]), ("empathy", stays)])
    stream.close()
    feed = (await (await client.get("/api/v1/confessions")).json())["items"]
    assert [(c["id"], c["empathy_count"]) for c in feed] == [(stays, 0)]  # the cache followed; the count too
    after = await (await client.get("/api/v1/stats")).json()
    assert after["users"] == before["users"] - 1 and after["confessions"]["total"] == before["confessions"]["total"] - 2
    for table, column in (("users", "id"), ("sessions", "user_id"), ("badges", "user_id"), ("reports", "user_id"),
                          ("empathies", "user_id"), ("confessions", "author_id")):
        assert await storage.r.fetch(f"SELECT count(*) FROM {table} WHERE {column} = ?", (ayse_id,)) == [(0,)], table
    assert await storage.r.fetch(f"SELECT count(*) FROM empathies WHERE confession_id IN ({gone[0]}, {gone[1]})") == [(0,)]
    deleted = [e for e in logs if e["event"] == "account_deleted"]
    assert deleted == [{"event": "account_deleted", "user_id": ayse_id, "confessions": 2, "empathies": 1,
                        "kept": False, "log_level": "info"}]  # how many, never which, never the name
    r = redis.Redis.from_url(redis_server.url)
    try:
        for key in r.scan_iter(f"{redis_prefix}*"):
            value = r.get(key) if r.type(key) == b"string" else repr(r.xrange(key) if r.type(key) == b"stream" else b"").encode()
            assert b"ayse_gidiyor" not in key + (value or b"") and "Adımla".encode() not in (value or b""), key
    finally:
        r.close()
    assert (await client.post("/api/v1/auth/register", json={"username": "ayse_gidiyor", "password": "password123"})).status == 201


async def test_the_last_admin_cannot_leave_and_an_operator_deletes_from_the_command_line(
        tmp_path: Path, daemons: Any) -> None:
    d = daemons(tmp_path)
    await d.start()
    made = cwalld("user", "create", "tek_yonetici", "--admin", "--password-stdin", input="password123\n",
                  cwd=tmp_path, env=d.env)
    assert made.returncode == 0, made.stderr
    async with aiohttp.ClientSession() as s:
        r = await s.post(d.url + "/api/v1/auth/login", json={"username": "tek_yonetici", "password": "password123"})
        admin = {"Authorization": "Bearer " + (await r.json())["token"]}
        r = await s.delete(d.url + "/api/v1/me", headers=admin, json={"password": "password123"})
        assert r.status == 409 and (await r.json())["error"]["code"] == "last_admin"
        r = await s.post(d.url + "/api/v1/auth/register", json={"username": "silinecek", "password": "password123"})
        token = {"Authorization": "Bearer " + (await r.json())["token"]}
        posted = await s.post(d.url + "/api/v1/confessions", headers=token,
                              json={"content": "Operatörün sileceği hesabın itirafı.", "category": "other"})
        assert posted.status == 202
    unconfirmed = await asyncio.to_thread(cwalld, "user", "delete", "silinecek", cwd=tmp_path, env=d.env)
    assert unconfirmed.returncode == 1 and "add --yes" in unconfirmed.stderr  # no terminal, no --yes: nothing
    done = await asyncio.to_thread(cwalld, "user", "delete", "silinecek", "--yes", cwd=tmp_path, env=d.env)
    assert done.returncode == 0 and "by the running daemon" in done.stdout, done.stderr
    async with aiohttp.ClientSession() as s:
        assert (await s.get(d.url + "/api/v1/me", headers=token)).status == 401
        assert (await (await s.get(d.url + "/api/v1/stats")).json())["confessions"]["total"] == 0
    again = await asyncio.to_thread(cwalld, "user", "delete", "silinecek", "--yes", cwd=tmp_path, env=d.env)
    assert again.returncode == 1 and "no user 'silinecek'" in again.stderr


async def test_detach_keeps_a_deleted_accounts_confessions_with_no_author_at_all(
        tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = configmod.replace(test_config(tmp_path, fake_ai.url), privacy={"on_account_delete": "detach"},
                            popular={"threshold": 1, "min_account_age_hours": 0})
    client = await make_client(cfg)
    api = Api(client)
    ayse, bora = await api.register("ayse_birakir"), await api.register("bora_okur")
    kept = [(await (await api.post(ayse, text, anonymous=anon)).json())["confession"]["id"]
            for text, anon in (("Adımla yazdım ama adım kalmasın.", False), ("Bu zaten anonimdi, kalsın.", True))]
    for cid in kept:
        await api.wait_status(cid, ayse)
    assert (await client.put(f"/api/v1/confessions/{kept[0]}/empathy", headers=api.auth(bora))).status == 200
    stream = await client.get("/api/v1/events")
    before = await (await client.get("/api/v1/stats")).json()
    with structlog.testing.capture_logs() as lines:
        assert (await client.delete("/api/v1/me", headers=api.auth(ayse), json={"password": "password123"})).status == 204
    assert [e for e in lines if e["event"] == "account_deleted"][0]["kept"] is True
    assert "ayse_birakir" not in repr(lines)
    after = await (await client.get("/api/v1/stats")).json()
    assert (after["users"], after["confessions"]["total"]) == (before["users"] - 1, before["confessions"]["total"])

    seen = [await next_event(stream) for _ in range(2)]
    assert sorted((e["event"], e["data"]["id"], e["data"]["author"]) for e in seen) == [
        ("published", kept[0], None), ("published", kept[1], None)]  # the cards lose the name, live
    stream.close()
    feed = {c["id"]: c for c in (await (await client.get("/api/v1/confessions")).json())["items"]}
    assert set(feed) == set(kept) and all(c["author"] is None for c in feed.values())
    assert feed[kept[0]]["empathy_count"] == 1  # others' empathy stays
    storage = client.app[DAEMON].storage
    assert await storage.r.fetch("SELECT author_id, anonymous FROM confessions ORDER BY id") == [(None, 1), (None, 1)]
    again = await api.register("ayse_birakir")  # the name is free, and inherits nothing
    assert (await (await client.get("/api/v1/me/confessions", headers=api.auth(again))).json())["items"] == []
    assert (await (await client.get("/api/v1/me/export", headers=api.auth(again))).json())["confessions"] == []
    ran = await client.app[SCHEDULER].run_now("popular")  # an authorless confession can be popular, no badge
    assert ran == {"newly_popular": 1, "badges_awarded": 0}


async def test_the_migration_to_authorless_confessions_keeps_every_row_and_index(tmp_path: Path) -> None:
    path = tmp_path / "eski.db"
    old = sqlite3.connect(path)
    for version, f in _migrations()[:4]:  # a database as the previous release left it
        old.executescript(f.read_text(encoding="utf-8"))
    old.executescript("""
        CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
        INSERT INTO schema_migrations VALUES (1, 'x'), (2, 'x'), (3, 'x'), (4, 'x');
        INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'eski', 'h', '2026-01-01T00:00:00Z');
        INSERT INTO confessions (id, author_id, content, category, status, created_at, published_at, holds)
            VALUES (7, 1, 'Eski sürümden kalan itiraf.', 'love', 'published', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', 2);
        INSERT INTO empathies VALUES (7, 1, '2026-01-02T00:00:00Z');""")
    indexes = old.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'confessions'").fetchall()
    old.close()
    storage = SQLiteStorage(str(path))
    await storage.open()
    try:
        c = await storage.confession(7)
        assert c is not None and (c.content, c.empathy_count, c.author_id) == ("Eski sürümden kalan itiraf.", 1, 1)
        assert await storage.r.fetch("SELECT holds FROM confessions") == [(2,)]
        assert sorted(await storage.r.fetch(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'confessions'")) == sorted(indexes)
        assert await storage.r.fetch("PRAGMA foreign_key_check") == []
        assert (await storage.r.fetch("SELECT max(version) FROM schema_migrations"))[0][0] == 5
        removed = await storage.delete_user(1, detach=True)  # the column takes NULL now
        assert removed is not None and await storage.r.fetch("SELECT author_id FROM confessions") == [(None,)]
    finally:
        await storage.close()


async def test_client_addresses_live_only_in_short_counters_and_in_logs_only_when_asked(
        tmp_path: Path, fake_ai: Any, make_client: Any, redis_server: Any, redis_prefix: str, monkeypatch: Any) -> None:
    address = "203.0.113.77"
    monkeypatch.setitem(logs._access, "enabled", True)
    monkeypatch.setitem(logs._access, "batcher", None)  # access lines through structlog, where capture_logs sees them
    base = configmod.replace(test_config(tmp_path, fake_ai.url), redis={"url": redis_server.url, "prefix": redis_prefix},
                             server={"trusted_proxies": ["127.0.0.1/32"]}, privacy={"client_data_hours": 0.05},
                             log={"level": "info"})
    client = await make_client(base)
    api = Api(client)
    via = {"X-Forwarded-For": address}
    with structlog.testing.capture_logs() as lines:
        r = await client.post("/api/v1/auth/register", json={"username": "adres_yok", "password": "password123"}, headers=via)
        token = (await r.json())["token"]
        await client.post("/api/v1/auth/login", json={"username": "adres_yok", "password": "password123"}, headers=via)
        posted = await client.post("/api/v1/confessions", headers={**via, **api.auth(token)},
                                   json={"content": "Adresimi kimse bilmesin diye yazdım.", "category": "other"})
        await api.wait_status((await posted.json())["confession"]["id"], token)
    assert any(e["event"] == "request" for e in lines) and address not in repr(lines)  # in no log line by default
    db = sqlite3.connect(tmp_path / "cwall.db")
    try:
        assert address not in "\n".join(db.iterdump())  # never in the database
    finally:
        db.close()
    r = redis.Redis.from_url(redis_server.url)
    try:
        counters = 0
        for key in r.scan_iter(f"{redis_prefix}*"):
            value = r.get(key) if r.type(key) == b"string" else b""
            assert address.encode() not in key + (value or b""), key
            if b":register:" in key or b":login" in key:
                counters += 1
                assert 0 < r.pttl(key) <= 0.05 * 3600 * 1000, key  # capped by [privacy].client_data_hours
        assert counters == 3  # register, and login per (client, name) and per client
    finally:
        r.close()

    told = await make_client(configmod.replace(base, log={"level": "info", "client_addresses": True},
                                               server={"trusted_proxies": ["127.0.0.1/32"],
                                                       "control_socket": str(tmp_path / "told.sock")}))
    with structlog.testing.capture_logs() as lines:
        await told.get("/api/v1/categories", headers=via)
    assert [e.get("client") for e in lines if e["event"] == "request"] == [address]

    written = io.BytesIO()
    journal = logs.LineBatcher(written)  # the fast JSON path journald gets
    monkeypatch.setitem(logs._access, "batcher", journal)
    await told.get("/api/v1/categories", headers=via)
    await client.get("/api/v1/categories", headers=via)
    journal.flush()
    assert [orjson.loads(line).get("client") for line in written.getvalue().splitlines()] == [address, None]


async def test_taking_back_one_confession_erases_its_text_and_reply(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """DELETE /confessions/{id} marked the row deleted and kept the text and the reply in the database."""
    client = await make_client(test_config(tmp_path, fake_ai.url))
    api = Api(client)
    token = await api.register()
    cid = (await (await api.post(token, "Bunu yazdığıma pişman oldum, geri alıyorum.")).json())["confession"]["id"]
    await api.wait_status(cid, token)
    assert (await client.delete(f"/api/v1/confessions/{cid}", headers=api.auth(token))).status == 204
    rows = await client.app[DAEMON].storage.r.fetch("SELECT status, content, ai_response FROM confessions WHERE id = ?", (cid,))
    assert rows == [("deleted", "", None)]


def test_an_operator_deleting_with_no_daemon_running_follows_the_configured_mode(tmp_path: Path) -> None:
    """The command line's own path (no daemon to ask) deleted the confessions even where the
    config said detach."""
    env = {"CWALLD_PRIVACY_ON_ACCOUNT_DELETE": "detach"}
    assert cwalld("user", "create", "cevrimdisi", "--password-stdin", input="password123\n", cwd=tmp_path,
                  env=env).returncode == 0
    db = sqlite3.connect(tmp_path / "data" / "cwall.db")
    try:
        db.execute("INSERT INTO confessions (author_id, content, category, anonymous, status, created_at)"
                   " SELECT id, 'Kalması gereken itiraf.', 'other', 0, 'published', '2026-01-01T00:00:00Z' FROM users")
        db.commit()
    finally:
        db.close()
    done = cwalld("user", "delete", "cevrimdisi", "--yes", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert rows_of(tmp_path / "data" / "cwall.db", "SELECT author_id, anonymous, content FROM confessions") == [
        (None, 1, "Kalması gereken itiraf.")]
    assert rows_of(tmp_path / "data" / "cwall.db", "SELECT count(*) FROM users") == [(0,)]


def rows_of(path: Path, sql: str) -> list[Any]:
    c = sqlite3.connect(path)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()
