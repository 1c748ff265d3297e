"""The daemon on PostgreSQL: the whole path, its settings, `cwalld check`, and a database that
goes away and comes back (the contract every backend keeps is in test_storage_contract.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cwalld import config as configmod
from cwalld.app import DAEMON
from cwalld.config import ConfigError
from cwalld.http.keys import SCHEDULER
from cwalld.storage import postgres, sqlite
from cwalld.storage.postgres import PostgresStorage
from tests.conftest import Api, Postgres, cwalld, test_config
from tests.proxy import SilentProxy


def test_both_dialects_number_their_migrations_alike() -> None:
    assert [v for v, _ in postgres.migrations()] == [v for v, _ in sqlite._migrations()]


async def test_post_publish_empathy_and_feed_on_postgresql(tmp_path: Path, fake_ai: Any, make_client: Any,
                                                           postgres_url: str) -> None:
    client = await make_client(test_config(tmp_path, fake_ai.url, storage={"url": postgres_url}))
    api = Api(client)
    assert isinstance(client.app[DAEMON].storage, PostgresStorage)
    author, reader = await api.register(), await api.register()
    cid = (await (await api.post(author, anonymous=True)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    c = await api.confession(cid)  # as anyone sees it
    assert c["ai_response"] and c.get("author") is None
    r = await client.put(f"/api/v1/confessions/{cid}/empathy", headers=api.auth(reader))
    assert r.status == 200 and (await r.json())["empathy_count"] == 1
    feed = await (await client.get("/api/v1/confessions")).json()
    assert [item["id"] for item in feed["items"]] == [cid]
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["db"] == "ok"


async def test_a_lost_database_is_a_503_and_heals_by_itself(tmp_path: Path, fake_ai: Any, make_client: Any,
                                                            postgres_url: str) -> None:
    proxy = SilentProxy(int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    url = postgres_url.replace(f":{proxy.target_port}/", f":{proxy.port}/")
    client = await make_client(test_config(tmp_path, fake_ai.url, storage={"url": url}))
    api = Api(client)
    token = await api.register()
    assert (await client.get("/api/v1/confessions")).status == 200  # now in the cache
    await proxy.stop()  # the database host goes away: its connections close, new ones are refused
    r = await api.post(token, "Veritabanı yokken yazılan itiraf.")
    assert r.status == 503 and (await r.json())["error"]["code"] == "storage_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    assert (await client.get("/api/v1/confessions")).status == 200  # a cached page is still served
    r = await client.get("/api/v1/confessions?limit=3")  # one that is not needs the database
    assert r.status == 503 and (await r.json())["error"]["code"] == "storage_unavailable"
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["db"] != "ok"
    await proxy.start()  # back, on the same address: no restart of the daemon
    r = await api.post(token, "Veritabanı dönünce yazılan itiraf.")
    assert r.status == 202, await r.text()
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["db"] == "ok"
    await proxy.stop()


async def test_a_silent_database_is_a_503_after_the_timeout_not_a_hang(postgres_url: str) -> None:
    proxy = SilentProxy(int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    s = PostgresStorage(postgres_url.replace(f":{proxy.target_port}/", f":{proxy.port}/"), timeout=0.5)
    await s.open()
    proxy.silence()  # a crashed host: nothing answers, nothing closes
    with pytest.raises(Exception) as e:
        async with asyncio.timeout(5):
            await s.create_user("sessiz", "h", None, False)
    assert e.value.__class__.__name__ == "StorageUnavailable" and s.health != "ok"
    proxy.heal()
    assert (await s.create_user("geri", "h", None, False)).username == "geri" and s.health == "ok"
    await s.close()
    await proxy.stop()


def test_storage_url_settings(tmp_path: Path) -> None:
    secret = tmp_path / "pg-password"
    secret.write_text("s3cret/+\n")
    cfg = configmod.build({"storage": {"url": "postgresql://cwalld@db:5432/wall", "password_file": str(secret),
                                       "pool_size": 4}})
    assert cfg.storage.url == "postgresql://cwalld:s3cret%2F%2B@db:5432/wall" and cfg.storage.pool_size == 4
    for table, key in (({"url": "mysql://db/wall"}, "storage.url"),
                       ({"url": "postgresql://db/wall", "path": "x.db"}, "storage.path"),
                       ({"password_file": str(secret)}, "storage.password_file"),
                       ({"url": "postgresql://u:p@db/wall", "password_file": str(secret)}, "storage.password_file"),
                       ({"url": "postgresql://db/wall", "pool_size": 0}, "storage.pool_size")):
        with pytest.raises(ConfigError) as e:
            configmod.build({"storage": table})
        assert e.value.key == key, (table, e.value)


def test_check_pings_postgresql_and_says_its_schema(tmp_path: Path, postgres_server: Postgres) -> None:
    asyncio.run(postgres_server.empty())
    env = {"CWALLD_STORAGE_URL": postgres_server.url}
    r = cwalld("check", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "storage  new" in r.stdout, r.stdout
    r = cwalld("user", "create", "admin_ali", "--admin", "--password-stdin", env=env, cwd=tmp_path,
               input="correct horse\n")
    assert r.returncode == 0, r.stderr
    r = cwalld("check", env=env, cwd=tmp_path)
    latest = max(v for v, _ in postgres.migrations())
    assert r.returncode == 0 and f"(schema {latest})" in r.stdout and postgres_server.name in r.stdout, r.stdout
    r = cwalld("check", env={"CWALLD_STORAGE_URL": "postgresql://postgres:hunter2@127.0.0.1:1/nowhere"}, cwd=tmp_path)
    assert r.returncode == 1 and "storage  FAILED" in r.stdout and "hunter2" not in r.stdout, r.stdout
    assert list(tmp_path.iterdir()) == []  # nothing made here: no ./data


def test_sslmode_in_the_url_is_honoured(postgres_server: Postgres) -> None:
    """``sslmode`` is the driver's: disable never encrypts; require encrypts, or refuses a server
    without TLS (this machine's has none; a server with it must then show the session encrypted)."""
    async def ssl_in_use(url: str) -> bool:
        s = PostgresStorage(url)
        await s.open()
        try:
            async with s.pool.acquire() as c:
                return bool(await c.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
        finally:
            await s.close()

    assert asyncio.run(ssl_in_use(postgres_server.url + "?sslmode=disable")) is False
    if asyncio.run(_server_has_ssl(postgres_server.url)):
        assert asyncio.run(ssl_in_use(postgres_server.url + "?sslmode=require")) is True
    else:
        with pytest.raises(ConnectionError, match="SSL"):
            asyncio.run(ssl_in_use(postgres_server.url + "?sslmode=require"))


async def _server_has_ssl(url: str) -> bool:
    import asyncpg

    c = await asyncpg.connect(url, ssl=False)
    try:
        return bool(await c.fetchval("SELECT current_setting('ssl') = 'on'"))
    finally:
        await c.close()


async def test_backups_on_postgresql_point_to_its_own_tools(tmp_path: Path, fake_ai: Any, make_client: Any,
                                                           postgres_url: str) -> None:
    cfg = test_config(tmp_path, fake_ai.url, storage={"url": postgres_url})
    client = await make_client(cfg)
    names = [job["name"] for job in await client.app[SCHEDULER].describe()]
    assert "backup" not in names and "popular" in names  # no scheduled SQLite copy of a PostgreSQL wall
    r = await asyncio.to_thread(cwalld, "backup", str(tmp_path / "x.db"), env={"CWALLD_STORAGE_URL": postgres_url},
                                cwd=tmp_path)
    assert r.returncode == 1 and "pg_dump" in r.stderr
