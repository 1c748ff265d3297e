"""[server].roles: processes that run only some parts (the API, the consumers, the scheduler)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cwalld import config as configmod
from tests.conftest import cwalld
from tests.test_live import next_event
from tests.test_redis_daemon import redis_env


def test_roles_are_checked_and_need_redis_to_be_split(tmp_path: Path) -> None:
    for roles, problem in ((["http", "web"], "must name some of http, consumers, scheduler"),
                           (["http", "http"], "each once"), ([], "must name some"),
                           (["http"], "only some roles need redis.url")):
        with pytest.raises(configmod.ConfigError) as e:
            configmod.checked(configmod.replace(configmod.load(None), server={"roles": roles}))
        assert e.value.key == "server.roles" and problem in e.value.problem, e.value
    alone = cwalld("serve", "--role", "http", cwd=tmp_path)  # the command line says the same, and starts nothing
    assert alone.returncode == 2 and "server.roles: only some roles need redis.url" in alone.stderr
    assert cwalld("serve", "--role", "web", cwd=tmp_path).returncode == 2


async def test_a_wall_split_into_an_api_process_and_a_worker(tmp_path: Path, daemons: Any, redis_server: Any,
                                                            redis_prefix: str, fake_ai: Any) -> None:
    env = {**redis_env(redis_server, redis_prefix, fake_ai), "CWALLD_STORAGE_PATH": str(tmp_path / "shared.db")}
    api = daemons(tmp_path, ("serve", "--role", "http"), **env)
    worker = daemons(tmp_path, CWALLD_SERVER_ROLES='["consumers", "scheduler"]',
                     CWALLD_SERVER_CONTROL_SOCKET=str(tmp_path / "worker.sock"), **env)
    await api.start()
    await worker.start()
    async with aiohttp.ClientSession() as s:
        for d, roles, parts in ((api, ["http"], set()), (worker, ["consumers", "scheduler"], {"consumers", "scheduler"})):
            for _ in range(100):
                r = await s.get(d.url + "/readyz")
                if r.status == 200:
                    break
                await asyncio.sleep(0.05)
            ready = await r.json()
            assert r.status == 200 and ready["roles"] == roles, ready
            assert {"consumers", "scheduler"} & set(ready) == parts  # it reports only what it runs
        assert (await s.get(worker.url + "/api/v1/confessions")).status == 404  # a worker serves no wall
        assert (await s.get(worker.url + "/")).status == 404
        assert (await s.get(worker.url + "/metrics")).status == 200

        stream = await s.get(api.url + "/api/v1/events")
        token = (await (await s.post(api.url + "/api/v1/auth/register",
                                     json={"username": "bolunmus", "password": "password123"})).json())["token"]
        posted = await s.post(api.url + "/api/v1/confessions", headers={"Authorization": f"Bearer {token}"},
                              json={"content": "API sürecinde yazılıp işçide yayımlanan itiraf.", "category": "other"})
        assert posted.status == 202
        cid = (await posted.json())["confession"]["id"]
        published = await next_event(stream, timeout=15)  # the worker's consumers published it
        assert (published["event"], published["data"]["id"]) == ("published", cid)
        assert published["data"]["ai_fallback"] is False
        stream.close()
        feed = await (await s.get(api.url + "/api/v1/confessions")).json()
        assert [c["id"] for c in feed["items"]] == [cid]

    listed = cwalld("jobs", "list", "--port", str(api.port), cwd=tmp_path, env=env)  # no scheduler there: it reads the records
    assert listed.returncode == 0 and all(job in listed.stdout for job in ("popular", "recovery")), listed
