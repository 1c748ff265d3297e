"""Nobody but the author can tie them to an anonymous confession: not through Redis, not through
the files on disk (issue 11 §3)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis as syncredis

from tests.conftest import Api, test_config


async def test_nothing_in_redis_ties_an_author_to_an_anonymous_confession(
        tmp_path: Path, fake_ai: Any, make_client: Any, own_redis: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, redis={"url": own_redis.url},
                                            limits={"daily_confessions": 50})))
    author = await api.register("gizli_yazar", name="Gizli Yazar")
    reader = await api.register("okuyucu")
    secret_text = "Kimse bilmesin: sınavda kopya çektim."
    anon = (await (await api.post(author, content=secret_text)).json())["confession"]["id"]
    named = (await (await api.post(author, content="Bunu adımla yazıyorum, saklamıyorum.", anonymous=False))
             .json())["confession"]["id"]
    for cid in (anon, named):
        await api.wait_status(cid, author)
    await api.c.put(f"/api/v1/confessions/{anon}/empathy", headers=api.auth(reader))
    for path in ("/api/v1/confessions", "/api/v1/confessions/popular", "/api/v1/stats", "/api/v1/me/confessions",
                 "/api/v1/me"):
        await api.c.get(path, headers=api.auth(author))
    for _ in range(3):  # failed logins are counted in Redis
        await api.c.post("/api/v1/auth/login", json={"username": "gizli_yazar", "password": "wrong-password"})
    user_id = (await (await api.c.get("/api/v1/me", headers=api.auth(author))).json())["user"]["id"]

    r = syncredis.Redis.from_url(own_redis.url)
    derived = [b"gizli", b"Gizli Yazar", hashlib.sha256(b"gizli_yazar").hexdigest()[:32].encode(),
               hashlib.sha256(b"gizli_yazar").hexdigest().encode(), f'"author_id":{user_id}'.encode(),
               f"mine:{user_id}".encode(), f"user:{user_id}".encode()]
    dump = []
    for key in r.keys("*"):
        kind = r.type(key)
        value = (r.get(key) or b"") if kind == b"string" else repr(
            r.lrange(key, 0, -1) if kind == b"list" else r.zrange(key, 0, -1) if kind == b"zset" else
            r.smembers(key) if kind == b"set" else r.xrange(key) if kind == b"stream" else r.hgetall(key)).encode()
        dump.append(key + b" " + value)
    assert any(secret_text.encode() in blob for blob in dump)  # the feed is cached: the text is there
    assert any(key.endswith(b"events") for key in r.keys("*"))  # the live log is looked at too
    for blob in dump:
        parts = [blob]
        if b"{" in blob and b'"items"' in blob:  # a public page: each item is what a visitor sees
            page = orjson.loads(blob[blob.index(b"{"):])
            parts = [orjson.dumps(item) for item in page["items"] if item["id"] == anon]
            assert all(orjson.loads(p)["author"] is None for p in parts)
        for part in parts:
            for mark in derived:
                assert mark not in part, (mark, part[:200])
    r.close()


async def test_the_database_and_control_socket_are_private_outside_systemd(tmp_path: Path, daemons: Any) -> None:
    """A Quickstart run made ./data/cwall.db 0644: author ids and password hashes readable by
    every local user."""
    d = daemons(tmp_path)
    await d.start()
    async with aiohttp.ClientSession() as s:  # a write, so the WAL exists
        async with s.post(d.url + "/api/v1/auth/register", json={"username": "dosya", "password": "password123"}) as r:
            assert r.status == 201
    data = tmp_path / "data"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [data, *data.iterdir()]}
    assert modes["data"] == 0o700, modes
    for name, mode in modes.items():
        if name != "data":
            assert mode & 0o077 == 0, (name, oct(mode))
