"""Shared fixtures: the fake AI server, daemon configs on a temp SQLite file, API helpers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cwalld import app as appmod
from cwalld import config as configmod
from cwalld.config import Config
from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _logs() -> None:
    from cwalld import logs

    logs.setup("info", "console")  # pytest shows these only for a failing test


@pytest.fixture
async def fake_ai() -> Any:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


def test_config(tmp_path: Path, ai_url: str | None = None, **sections: dict[str, Any]) -> Config:
    """Fast settings for tests: short backoff and timeouts, a temp database."""
    raw: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "cwall.db")},
        "queue": {"backoff": [0.05, 0.1, 0.2], "job_timeout": 2.0, "shutdown_grace": 2.0},
        "ai": {"request_timeout": 1.0},
        "log": {"level": "warning"},
    }
    if ai_url:
        raw["ai"].update(api_key="test-key", base_url=ai_url)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return configmod.build(raw, "test")


test_config.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def make_client(aiohttp_client: Any) -> Callable[[Config], Awaitable[TestClient]]:
    """Start the whole daemon (storage, queue, consumers, HTTP) in the test's loop."""

    async def start(cfg: Config) -> TestClient:
        return await aiohttp_client(appmod.build(cfg))

    return start


@pytest.fixture
async def client(tmp_path: Path, fake_ai: FakeOpenAI, make_client: Any) -> TestClient:
    return await make_client(test_config(tmp_path, fake_ai.url))


class Api:
    """Tiny helpers over a test client, so tests read like the requests they make."""

    def __init__(self, client: TestClient) -> None:
        self.c = client
        self._n = 0

    async def register(self, username: str | None = None, **extra: Any) -> str:
        self._n += 1
        username = username or f"user_{self._n}_{os.getpid()}"
        r = await self.c.post("/api/v1/auth/register", json={"username": username, "password": "password123", **extra})
        assert r.status == 201, await r.text()
        return (await r.json())["token"]

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def post(self, token: str, content: str = "Bugün çok yorgunum ama kimseye söyleyemedim.",
                   category: str = "love", **extra: Any) -> Any:
        return await self.c.post("/api/v1/confessions", json={"content": content, "category": category, **extra},
                                 headers=self.auth(token))

    async def confession(self, cid: int, token: str | None = None) -> dict[str, Any]:
        r = await self.c.get(f"/api/v1/confessions/{cid}", headers=self.auth(token) if token else {})
        return (await r.json())["confession"] if r.status == 200 else {"http_status": r.status}

    async def wait_status(self, cid: int, token: str, status: str = "published", timeout: float = 5.0) -> dict[str, Any]:
        c: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = await self.confession(cid, token)
            if c.get("status") == status:
                return c
            await asyncio.sleep(0.02)
        raise AssertionError(f"confession {cid} not {status} after {timeout}s: {c}")


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cwalld(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a person would, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "cwalld", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=kw.pop("cwd", ROOT), **kw)
