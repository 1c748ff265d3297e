"""Limits that stop abuse without locking out the innocent (issue 11 §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Api, test_config


def via(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.7, {address}"}  # a client spoofs the first hop; the proxy adds the last


async def login(api: Api, username: str, password: str, address: str) -> int:
    r = await api.c.post("/api/v1/auth/login", json={"username": username, "password": password}, headers=via(address))
    return r.status


async def test_a_guesser_cannot_lock_a_victim_out(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """After 15 wrong guesses on carol from one address, her right password got 429."""
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, server={"trusted_proxies": ["127.0.0.1"]},
                                            auth={"login_attempts_per_minute": 10})))
    await api.register("carol")
    statuses = [await login(api, "carol", "wrong-guess", "203.0.113.5") for _ in range(15)]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    assert await login(api, "carol", "password123", "203.0.113.99") == 200  # carol, from her own address


async def test_one_client_cannot_try_many_usernames(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, server={"trusted_proxies": ["127.0.0.0/8"]},
                                            auth={"login_attempts_per_client_minute": 30})))
    statuses = [await login(api, f"kurban_{i}", "password123", "203.0.113.5") for i in range(35)]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}
    assert await login(api, "kurban_99", "password123", "203.0.113.6") == 401  # another client is not limited


async def test_registrations_are_limited_per_client(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    """100 accounts in 61 s from one client, before."""
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, server={"trusted_proxies": ["127.0.0.1"]},
                                            auth={"registrations_per_hour": 5})))
    statuses = []
    for i in range(7):
        r = await api.c.post("/api/v1/auth/register", json={"username": f"bot_{i}", "password": "password123"},
                             headers=via("203.0.113.5"))
        statuses.append(r.status)
        if r.status == 429:
            assert int(r.headers["Retry-After"]) >= 1
    assert statuses == [201] * 5 + [429] * 2
    r = await api.c.post("/api/v1/auth/register", json={"username": "insan", "password": "password123"},
                         headers=via("203.0.113.6"))
    assert r.status == 201


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(tmp_path: Path, fake_ai: Any,
                                                                          make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, auth={"registrations_per_hour": 2})))
    statuses = []
    for i in range(3):  # a different forged address each time: still one client, the peer
        r = await api.c.post("/api/v1/auth/register", json={"username": f"sahte_{i}", "password": "password123"},
                             headers=via(f"203.0.113.{i}"))
        statuses.append(r.status)
    assert statuses == [201, 201, 429]
