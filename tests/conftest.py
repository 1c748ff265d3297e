"""Shared fixtures: the fake AI server, daemon configs on a temp SQLite file, API helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from cwalld import app as appmod
from cwalld import config as configmod
from cwalld.config import Config
from cwalld.http.keys import SCHEDULER
from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


class RedisServer:
    """A private redis-server on a free port in a temp dir: tests may stop, flush and restart it."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir, self.args = workdir, args
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, probe_port: int | None = None) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", probe_port or self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                              check=True).stdout.strip()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One Redis for the session; tests keep apart by key prefix (see ``redis_prefix``)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A Redis for one test alone, for tests that stop or flush it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    return f"t{abs(hash(request.node.nodeid)) % 10**10}:"


POSTGRES = os.environ.get("TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")  # .ci/run starts it


class Postgres:
    """A database of this test run's own on the machine's PostgreSQL server, dropped at its end."""

    def __init__(self) -> None:
        self.name = f"cwalld_test_{os.getpid()}_{int(time.time())}"
        self.url = POSTGRES.rsplit("/", 1)[0] + "/" + self.name

    async def admin(self, sql: str, url: str = POSTGRES) -> None:
        import asyncpg

        c = await asyncpg.connect(url)
        try:
            await c.execute(sql)
        finally:
            await c.close()

    async def empty(self) -> str:
        """The database with no tables at all (a new wall's), for one test."""
        await self.admin("DROP SCHEMA public CASCADE; CREATE SCHEMA public", self.url)
        return self.url


@pytest.fixture(scope="session")
def postgres_server() -> Any:
    import concurrent.futures

    def admin(sql: str) -> None:  # on a thread: the first test to ask may be inside a running loop
        with concurrent.futures.ThreadPoolExecutor(1) as t:
            t.submit(asyncio.run, pg.admin(sql)).result()

    pg = Postgres()
    admin(f'CREATE DATABASE "{pg.name}"')
    yield pg
    admin(f'DROP DATABASE IF EXISTS "{pg.name}" WITH (FORCE)')


@pytest.fixture
async def postgres_url(postgres_server: Postgres) -> str:
    """A URL of an empty PostgreSQL database for this test."""
    return await postgres_server.empty()


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
        "server": {"control_socket": str(tmp_path / "cwalld.sock")},
        "queue": {"backoff": [0.05, 0.1, 0.2], "job_timeout": 2.0, "shutdown_grace": 2.0},
        "ai": {"request_timeout": 1.0},
        "auth": {"registrations_per_hour": 10000, "login_attempts_per_client_minute": 10000},
        "log": {"level": "warning"},
    }
    if ai_url:
        raw["ai"].update(api_key="test-key", base_url=ai_url)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    if raw["storage"].get("url"):  # PostgreSQL instead of the file
        del raw["storage"]["path"]
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


class Daemon:
    def __init__(self, workdir: Path, env: dict[str, str], argv: tuple[str, ...] = ()) -> None:
        self.argv = argv  # after `python -m cwalld`, e.g. ("serve", "--role", "http")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "CWALLD_SERVER_PORT": str(self.port), "CWALLD_AUTH_REGISTRATIONS_PER_HOUR": "10000",
                    "CWALLD_AUTH_LOGIN_ATTEMPTS_PER_CLIENT_MINUTE": "10000", **env}
        self.env.pop("CWALLD_CONFIG", None)
        self.workdir = workdir
        self.log = workdir / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cwalld", *self.argv], cwd=self.workdir, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, self.log.read_text()
                await asyncio.sleep(0.05)
        raise AssertionError("daemon did not start: " + self.log.read_text())

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal and wait without blocking the loop (the fake AI may serve the daemon meanwhile)."""
        return await asyncio.to_thread(self.kill, sig)


@pytest.fixture
def daemons() -> Any:
    started: list[Daemon] = []

    def make(workdir: Path, argv: tuple[str, ...] = (), **env: str) -> Daemon:
        d = Daemon(workdir, env, argv)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


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

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait for the scheduler's start-up catch-up runs (popular bumps the feed caches)."""
        deadline = time.monotonic() + timeout
        while not self.c.app[SCHEDULER].caught_up:
            assert time.monotonic() < deadline, f"start-up jobs not finished after {timeout}s"
            await asyncio.sleep(0.02)

    async def wait_status(self, cid: int, token: str, status: str = "published", timeout: float = 5.0) -> dict[str, Any]:
        """Wait until the confession has ``status`` and its job has ended: the job commits the
        status first and then tells the caches (a Redis round trip), so a reader in between may
        still get the cached page from before — a window of the job's, not a stale cache."""
        c: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = await self.confession(cid, token)
            if c.get("status") == status:
                await self.jobs_ended(deadline)
                return c
            await asyncio.sleep(0.02)
        raise AssertionError(f"confession {cid} not {status} after {timeout}s: {c}")

    async def jobs_ended(self, deadline: float) -> None:
        """Until no job runs in this daemon (or the deadline: some tests keep one running)."""
        from cwalld.http.keys import WALL

        queue = self.c.app[WALL].queue
        while time.monotonic() < deadline:
            try:
                if not (await queue.stats())["active"]:
                    return
            except Exception:  # noqa: BLE001 - Redis stopped by the test: nothing to wait for
                return
            await asyncio.sleep(0.01)


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
