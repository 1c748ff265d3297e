"""Operations: sd_notify and the watchdog, reload, graceful stop, health, metrics, logs, systemd
unit, the single-file build — each against the real daemon."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, Api, cwalld, test_config
from tests.test_daemon import call


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Log lines leave at the end of an event-loop iteration: wait for one a little."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except BlockingIOError:
                return [m for _, m in self.messages]

    async def wait_for(self, line: str, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            for at, message in self.messages:
                if line in message.splitlines():
                    return at
            await asyncio.sleep(0.01)
        raise AssertionError(f"{line} never arrived: {self.messages}")


async def test_notify_ready_watchdog_reload_and_stop(tmp_path: Path, daemons: Any) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    cfg = tmp_path / "cwalld.toml"
    cfg.write_text('[log]\nlevel = "warning"\n')
    d = daemons(tmp_path, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000", CWALLD_CONFIG=str(cfg))
    d.env["CWALLD_CONFIG"] = str(cfg)
    with d.log.open("ab") as out:
        d.proc = subprocess.Popen([sys.executable, "-m", "cwalld"], cwd=tmp_path, env=d.env,
                                  stdout=out, stderr=subprocess.STDOUT)
    await notify.wait_for("READY=1")
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + "/healthz") as r:  # READY=1 came only once it could answer
            assert r.status == 200
        assert any(m.startswith("READY=1\nSTATUS=serving on 127.0.0.1:") for m in notify.drain())
        await asyncio.sleep(1.0)
        notify.drain()
        pings = [at for at, m in notify.messages if m == "WATCHDOG=1"]
        assert len(pings) >= 3  # every 0.2 s (half of WATCHDOG_USEC): ~5 in this second

        await call(s, "GET", d.url + "/api/v1/categories")
        assert '"event":"request"' not in d.log.read_text()  # level warning: no access lines
        cfg.write_text('[log]\nlevel = "info"\n')
        d.proc.send_signal(signal.SIGHUP)
        await notify.wait_for("RELOADING=1")
        await asyncio.sleep(0.3)
        await call(s, "GET", d.url + "/api/v1/categories")
        await eventually(lambda: '"event":"request"' in d.log.read_text())  # the new level took effect

        cfg.write_text('[log]\nlevel = "info"\n[server]\nport = 1\n[queue]\nretries = "many"\n')
        d.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: '"event":"reload_failed"' in d.log.read_text())
        assert "queue.retries" in d.log.read_text()
        status, _ = await call(s, "GET", d.url + "/api/v1/categories")
        assert status == 200  # still serving on the old config

        cfg.write_text('[log]\nlevel = "info"\n[storage]\npath = "elsewhere.db"\n')
        d.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: '"keys":["storage.path"],"event":"reload_needs_restart"' in d.log.read_text())
        status, _ = await call(s, "GET", d.url + "/api/v1/categories")
        assert status == 200 and not (tmp_path / "elsewhere.db").exists()  # the database did not change under it
    assert await d.stop(signal.SIGTERM) == 0
    assert "STOPPING=1" in "\n".join(notify.drain())
    print("notify:", " → ".join(dict.fromkeys(m.replace("\n", " | ") for m in notify.drain())))  # for -s


async def test_silent_without_notify_socket(tmp_path: Path) -> None:
    from cwalld.notify import Notifier

    n = Notifier({})
    n.ready("x")
    n.start_watchdog()
    assert n._task is None


async def test_sigterm_mid_job_then_restart_publishes_everything(tmp_path: Path, daemons: Any, fake_ai: Any) -> None:
    env = {"OPENAI_API_KEY": "k", "CWALLD_AI_BASE_URL": fake_ai.url, "CWALLD_AI_REQUEST_TIMEOUT": "30",
           "CWALLD_QUEUE_JOB_TIMEOUT": "60", "CWALLD_QUEUE_SHUTDOWN_GRACE": "0.5", "CWALLD_LIMITS_DAILY_CONFESSIONS": "20"}
    fake_ai.latency = 30
    d = daemons(tmp_path, **env)
    await d.start()
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", d.url + "/api/v1/auth/register", json={"username": "dur", "password": "password123"})
        for i in range(6):
            await call(s, "POST", d.url + "/api/v1/confessions", body["token"],
                       json={"content": f"Durdurulan itiraf {i} burada.", "category": "other"})
        while fake_ai.calls["moderations"] < 5:
            await asyncio.sleep(0.02)
        assert await d.stop(signal.SIGTERM) == 0  # jobs outlive the grace: the process still exits 0
        fake_ai.latency = 0
        d2 = daemons(tmp_path, **env)
        await d2.start()
        deadline = time.monotonic() + 10
        while True:
            _, mine = await call(s, "GET", d2.url + "/api/v1/me/confessions", body["token"])
            if [c["status"] for c in mine["items"]] == ["published"] * 6:
                break
            assert time.monotonic() < deadline, mine
            await asyncio.sleep(0.05)
    assert await d2.stop(signal.SIGTERM) == 0


async def test_metrics_parse_and_move(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url)))

    async def scrape() -> dict[str, float]:
        r = await api.c.get("/metrics")
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        values = {}
        for family in text_string_to_metric_families(await r.text()):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
        return values

    before = await scrape()
    token = await api.register()
    cid = (await (await api.post(token)).json())["confession"]["id"]
    await api.wait_status(cid, token)
    for _ in range(3):
        await api.c.get("/api/v1/confessions")
    after = await scrape()
    feed = "cwalld_http_requests_total{method=GET,route=/api/v1/confessions,status=200}"
    assert after[feed] - before.get(feed, 0) == 3
    assert after["cwalld_http_request_duration_seconds_count{route=/api/v1/confessions}"] >= 3
    assert after["cwalld_jobs_total{event=completed}"] - before.get("cwalld_jobs_total{event=completed}", 0) == 1
    assert after["cwalld_ai_calls_total{call=chat}"] - before.get("cwalld_ai_calls_total{call=chat}", 0) == 1
    assert after["cwalld_queue_jobs{state=completed}"] == 1
    fake_ai.script.extend([500] * 4)  # every attempt fails: the job ends with a fallback, counted apart
    cid = (await (await api.post(token, content="Bu itirafın yanıtı yedekten gelecek.")).json())["confession"]["id"]
    assert (await api.wait_status(cid, token))["ai_fallback"] is True
    last = await scrape()
    assert last["cwalld_queue_jobs{state=fallback}"] == 1 and last["cwalld_queue_jobs{state=completed}"] == 1
    assert last["cwalld_jobs_total{event=fallback_used}"] - after.get("cwalld_jobs_total{event=fallback_used}", 0) == 1
    assert after["cwalld_cache_hits_total{type=feed}"] >= 2
    assert after["process_resident_memory_bytes{}"] > 10e6
    assert "cwalld_event_loop_lag_seconds{}" in after


async def test_metrics_token(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, server={"metrics_token": "s3cret"})))
    assert (await api.c.get("/metrics")).status == 401
    assert (await api.c.get("/metrics", headers={"Authorization": "Bearer s3cret"})).status == 200


async def test_readyz_follows_redis(tmp_path: Path, fake_ai: Any, make_client: Any, own_redis: Any) -> None:
    api = Api(await make_client(test_config(tmp_path, fake_ai.url, redis={"url": own_redis.url})))
    r = await api.c.get("/readyz")
    assert r.status == 200 and await r.json() == {"roles": ["http", "consumers", "scheduler"], "db": "ok", "redis": "ok",
                                                  "consumers": 5, "scheduler": "ok", "ai": "ok"}
    own_redis.stop()
    r = await api.c.get("/readyz")
    assert r.status == 503 and (await r.json())["redis"] == "down"
    own_redis.start()
    deadline = time.monotonic() + 10
    while (r := await api.c.get("/readyz")).status != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_readyz_embedded(api: Api) -> None:
    r = await api.c.get("/readyz")
    assert r.status == 200 and (await r.json())["redis"] == "disabled"


async def test_log_lines_are_json_with_context_and_no_secrets(tmp_path: Path, daemons: Any, fake_ai: Any) -> None:
    d = daemons(tmp_path, OPENAI_API_KEY="sk-very-secret-key", CWALLD_AI_BASE_URL=fake_ai.url,
                CWALLD_LOG_SLOW_QUERY_MS="0.001", CWALLD_LOG_STATS_INTERVAL="0.3")
    await d.start()
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", d.url + "/api/v1/auth/register", json={"username": "gizem", "password": "parola-12345"})
        token = body["token"]
        _, c = await call(s, "POST", d.url + "/api/v1/confessions", token,
                          json={"content": "Günlüklerde adım geçmemeli.", "category": "other"})
        await call(s, "POST", d.url + "/api/v1/auth/login", json={"username": "gizem", "password": "parola-12345"})
        async with s.get(d.url + '/api/v1/no"such\\path', headers={"X-Request-ID": 'client "7"'}) as r:
            assert r.status == 404
        await asyncio.sleep(0.6)
    assert await d.stop(signal.SIGTERM) == 0
    text = d.log.read_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    for secret in (token, "parola-12345", "sk-very-secret-key", "gizem"):
        assert secret not in text
    access = [r for r in records if r["event"] == "request"]
    assert access and all({"request_id", "method", "path", "status", "ms", "timestamp", "level"} <= set(r) for r in access)
    assert [(r["path"], r["status"]) for r in access if r["request_id"] == 'client "7"'] == [('/api/v1/no"such\\path', 404)]
    created = [r for r in records if r["event"] == "confession_created"]  # logged while serving the POST
    posted = [r for r in access if r["path"] == "/api/v1/confessions" and r["method"] == "POST"]
    assert len(created) == len(posted) == 1 and created[0]["request_id"] == posted[0]["request_id"]
    done = [r for r in records if r["event"] == "job_completed"]
    assert done and {"job_id", "confession_id", "attempt", "ms"} <= set(done[0])
    assert "request_id" not in done[0]  # a consumer's line is no request's
    assert done[0]["confession_id"] == c["confession"]["id"]
    slow = [r for r in records if r["event"] == "slow_query"]
    assert slow and {"query", "ms"} <= set(slow[0]) and "?" in "".join(r["query"] for r in slow)
    stats = [r for r in records if r["event"] == "stats"]
    assert stats and stats[0]["rss_mb"] > 10 and "queue" in stats[0] and "cache_hit_ratio" in stats[0]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError("systemd-analyze is missing: .ci/run installs it")
        pytest.skip("systemd-analyze not installed here (CI installs it)")
    return found


def test_systemd_unit_verifies_and_scores_at_most_2(tmp_path: Path) -> None:
    binary = systemd_analyze()
    unit = (ROOT / "systemd" / "cwalld.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ExecReload=" in unit
    # verify wants ExecStart to exist: point it at this checkout's entry point
    local = tmp_path / "cwalld.service"
    local.write_text(unit.replace("/usr/bin/cwalld", str(Path(sys.executable).parent / "cwalld")))
    r = subprocess.run([binary, "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([binary, "security", "--offline=true", str(ROOT / "systemd" / "cwalld.service")],
                       capture_output=True, text=True)
    line = r.stdout.strip().splitlines()[-1]
    print(line)
    score = float(line.split("Overall exposure level for cwalld.service: ")[1].split()[0])
    assert score <= 2.0


@pytest.fixture
async def api(tmp_path: Path, fake_ai: Any, make_client: Any) -> Api:
    return Api(await make_client(test_config(tmp_path, fake_ai.url)))



def test_reload_checks_the_config_first(tmp_path: Path) -> None:
    """`systemctl reload` with a broken config reported success; only a JSON line said it failed."""
    unit = (ROOT / "systemd" / "cwalld.service").read_text()
    reloads = [line for line in unit.splitlines() if line.startswith("ExecReload=")]
    assert reloads == ["ExecReload=/usr/bin/cwalld check --config-only -c /etc/cwalld/config.toml",
                       "ExecReload=/bin/kill -HUP $MAINPID"]  # systemd runs them in order; a failure stops it
    broken, fine = tmp_path / "broken.toml", tmp_path / "fine.toml"
    broken.write_text("[queue]\njob_timeout = -1\n")
    fine.write_text(f'[storage]\npath = "{tmp_path / "never.db"}"\n')
    r = cwalld("check", "--config-only", "-c", str(broken))
    assert r.returncode == 2 and "queue.job_timeout" in r.stderr
    r = cwalld("check", "--config-only", "-c", str(fine))
    assert r.returncode == 0 and r.stdout.startswith("config   ok")
    assert not (tmp_path / "never.db").exists()  # the config alone: no database opened or made
