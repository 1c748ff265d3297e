"""The real daemon as a subprocess: quickstart on defaults, kill -9 and restart, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from cwalld.storage.sqlite import _migrations
from tests.conftest import ROOT, cwalld, free_port


async def call(s: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, url, headers=headers, **kw) as r:
        return r.status, await r.json()


async def test_quickstart_on_embedded_defaults(tmp_path: Path, daemons: Any) -> None:
    """What the README promises: no config, no Redis, no API key — post, and it is published."""
    d = daemons(tmp_path)
    await d.start()
    async with aiohttp.ClientSession() as s:
        status, body = await call(s, "POST", d.url + "/api/v1/auth/register",
                                  json={"username": "ayse", "password": "gizli-sifre"})
        assert status == 201
        status, body = await call(s, "POST", d.url + "/api/v1/confessions", body["token"],
                                  json={"content": "Sınavdan önce hiç çalışmadım ama geçtim.", "category": "school"})
        assert status == 202 and body["confession"]["status"] == "pending"
        posted = time.monotonic()
        while True:
            _, feed = await call(s, "GET", d.url + "/api/v1/confessions")
            if feed["items"]:
                break
            assert time.monotonic() - posted < 1.0, "not published within a second"
            await asyncio.sleep(0.02)
        item = feed["items"][0]
        assert item["status"] == "published" and item["ai_fallback"] is True and item["ai_response"]
        assert item["author"] is None
    assert (tmp_path / "data" / "cwall.db").exists()
    assert d.kill(signal.SIGTERM) == 0
    log = d.log.read_text()
    assert '"event":"listening"' in log and f'"url":"http://127.0.0.1:{d.port}"' in log and '"event":"stopped"' in log
    assert "ayse" not in log and "gizli-sifre" not in log  # no author, no password in the logs


async def test_kill_9_mid_job_then_restart_publishes_every_confession(tmp_path: Path, daemons: Any, fake_ai: Any) -> None:
    env = {"OPENAI_API_KEY": "k", "CWALLD_AI_BASE_URL": fake_ai.url, "CWALLD_AI_REQUEST_TIMEOUT": "30",
           "CWALLD_QUEUE_JOB_TIMEOUT": "60", "CWALLD_LIMITS_DAILY_CONFESSIONS": "50"}
    fake_ai.latency = 30  # every job is stuck in the AI call when the process dies
    d = daemons(tmp_path, **env)
    await d.start()
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", d.url + "/api/v1/auth/register", json={"username": "veli", "password": "password123"})
        token = body["token"]
        ids = []
        for i in range(8):
            status, body = await call(s, "POST", d.url + "/api/v1/confessions", token,
                                      json={"content": f"Yarım kalan itiraf numarası {i}", "category": "other"})
            assert status == 202
            ids.append(body["confession"]["id"])
        while fake_ai.calls["moderations"] < 5:  # five consumers are inside an AI call
            await asyncio.sleep(0.02)
        d.kill(signal.SIGKILL)

        fake_ai.latency = 0
        d2 = daemons(tmp_path, **env)
        await d2.start()
        deadline = time.monotonic() + 10
        while True:
            _, mine = await call(s, "GET", d2.url + "/api/v1/me/confessions", token)
            if all(c["status"] == "published" for c in mine["items"]):
                break
            assert time.monotonic() < deadline, mine
            await asyncio.sleep(0.05)
        assert sorted(c["id"] for c in mine["items"]) == ids
        assert all(c["ai_fallback"] is False for c in mine["items"])
    assert d2.kill(signal.SIGTERM) == 0


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_check_never_creates_or_changes_a_file_and_user_create(tmp_path: Path) -> None:
    """`check` created ./data/cwall.db (and its folder) where it was run."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path / "data" / "db.sqlite"}"\n')
    before = files(tmp_path)
    r = cwalld("check", "-c", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["config", "ok"], ["secrets", "ok"], ["storage", "new"],
                                                    ["redis", "disabled"], ["ai", "disabled"]]
    assert "not created yet" in lines[2] and files(tmp_path) == before
    r = cwalld("user", "create", "admin_ali", "--admin", "--password-stdin", "-c", str(cfg), input="correct horse\n")
    assert r.returncode == 0 and "created user admin_ali" in r.stdout and "admin" in r.stdout
    before = files(tmp_path)
    r = cwalld("check", "-c", str(cfg), cwd=tmp_path)
    storage = r.stdout.splitlines()[2]
    latest = max(v for v, _ in _migrations())  # every migration applied
    assert r.returncode == 0 and storage.split()[:2] == ["storage", "ok"] and f"schema {latest})" in storage, r.stdout
    assert files(tmp_path) == before  # no -wal, no -shm, nothing written
    r = cwalld("user", "create", "admin_ali", "--password-stdin", "-c", str(cfg), input="correct horse\n")
    assert r.returncode == 1 and "taken" in r.stderr
    r = cwalld("user", "create", "x", "--password-stdin", "-c", str(cfg), input="short\n")
    assert r.returncode == 1 and "username" in r.stderr
    r = cwalld("--version")
    assert r.returncode == 0 and r.stdout.startswith("cwalld ")


def test_check_reports_an_unreachable_ai_and_redis(tmp_path: Path) -> None:
    port = free_port()
    env = {"OPENAI_API_KEY": "k", "CWALLD_AI_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "CWALLD_REDIS_URL": f"redis://127.0.0.1:{port}/0", "CWALLD_STORAGE_PATH": str(tmp_path / "x.db")}
    r = cwalld("check", env=env)
    assert r.returncode == 1
    states = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    assert states == {"config": "ok", "secrets": "ok", "storage": "new", "redis": "FAILED", "ai": "FAILED"}


async def test_check_pings_a_live_ai(tmp_path: Path, fake_ai: Any) -> None:
    env = {"OPENAI_API_KEY": "k", "CWALLD_AI_BASE_URL": fake_ai.url, "CWALLD_STORAGE_PATH": str(tmp_path / "x.db")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cwalld", "check", cwd=ROOT,
                                                env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and "ai       ok" in out.decode()
    assert fake_ai.calls["models"] == 1


def test_a_start_that_cannot_happen_says_why_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"CWALLD_SERVER_PORT": str(taken.getsockname()[1]), "CWALLD_STORAGE_PATH": str(tmp_path / "db"),
               "CWALLD_SERVER_CONTROL_SOCKET": str(tmp_path / "c.sock")}
        r = cwalld("serve", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith("cwalld: cannot listen on 127.0.0.1:") and len(r.stderr.splitlines()) == 1
    (tmp_path / "file").write_text("not a folder")
    r = cwalld("serve", env={**env, "CWALLD_SERVER_PORT": str(free_port()), "CWALLD_STORAGE_PATH": str(tmp_path / "file" / "db")})
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith("cwalld: cannot open the database ") and len(r.stderr.splitlines()) == 1
    r = cwalld("serve", env={**env, "CWALLD_SERVER_PORT": str(free_port()),
                             "CWALLD_SERVER_CONTROL_SOCKET": str(tmp_path / "file" / "c.sock")})
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith("cwalld: cannot open the control socket ") and len(r.stderr.splitlines()) == 1


async def test_check_names_the_url_and_a_missing_models_list_is_not_fatal(tmp_path: Path, fake_ai: Any) -> None:
    """`check` said only "HTTP 404" for a compatible server without GET /models."""
    base = fake_ai.url + "/ollama"  # nothing here: every path answers 404
    env = {"OPENAI_API_KEY": "k", "CWALLD_AI_BASE_URL": base, "CWALLD_STORAGE_PATH": str(tmp_path / "x.db")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cwalld", "check", cwd=ROOT,
                                                env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE)
    out = (await proc.communicate())[0].decode()
    ai = next(line for line in out.splitlines() if line.startswith("ai "))
    assert proc.returncode == 0 and ai.split()[1] == "unsure" and f"GET {base}/models: HTTP 404" in ai, out
    assert "may lack /models" in ai


def on_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal, answering its prompts."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, as a person at a terminal would run it
        os.execvpe(sys.executable, [sys.executable, "-m", "cwalld", *args], {**os.environ, "PYTHONPATH": str(ROOT)})
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    import select

    while time.monotonic() < deadline:
        if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
            os.kill(pid, signal.SIGKILL)  # stuck waiting for an answer that never comes: fail, do not hang
            break
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal: it is done
            break
        if not chunk:
            break
        out += chunk
        if pending and out.endswith(b": "):  # a prompt waits (its own line, not yet answered)
            os.write(fd, pending.pop(0).encode() + b"\n")
    os.close(fd)
    return os.waitpid(pid, 0)[1] >> 8, out.decode(errors="replace")


def test_passwords_are_asked_twice_without_echo_on_a_terminal(tmp_path: Path) -> None:
    """`user create NAME --admin --password-stdin` on a terminal showed no prompt and echoed the password."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path / "db.sqlite"}"\n')
    code, out = on_a_terminal(["user", "create", "ayse_admin", "--admin", "-c", str(cfg)], ["gizli parola 1", "gizli parola 1"])
    assert code == 0 and "Password:" in out and "Again:" in out and "created user ayse_admin" in out, out
    assert "gizli parola" not in out  # never echoed
    code, out = on_a_terminal(["user", "password", "ayse_admin", "-c", str(cfg)], ["yeni parola 22", "baska parola"])
    assert code == 1 and "differ" in out
    r = cwalld("user", "create", "mehmet", "-c", str(cfg), input="x\n")  # not a terminal, no --password-stdin
    assert r.returncode == 1 and "--password-stdin" in r.stderr


async def test_user_password_sets_it_and_signs_the_user_out(tmp_path: Path) -> None:
    from cwalld.accounts import create_user, token_hash
    from cwalld.domain import iso_after
    from cwalld.storage.sqlite import SQLiteStorage

    db = str(tmp_path / "db.sqlite")
    s = SQLiteStorage(db)
    await s.open()
    user = await create_user(s, "zeynep", "eski parola 1")
    await s.create_session(user.id, token_hash("tok"), iso_after(3600))
    await s.close()
    env = {"CWALLD_STORAGE_PATH": db}
    r = await asyncio.to_thread(cwalld, "user", "password", "zeynep", "--password-stdin", input="yeni parola 2\n", env=env)
    assert r.returncode == 0 and "signed out" in r.stdout, r
    r = await asyncio.to_thread(cwalld, "user", "password", "yok_boyle", "--password-stdin", input="yeni parola 2\n",
                                env=env)
    assert r.returncode == 1 and "no user" in r.stderr
    s = SQLiteStorage(db)  # a closed storage is not opened again
    await s.open()
    try:
        found = await s.credentials("zeynep")
        assert found is not None and await s.session_user(token_hash("tok")) is None
        from cwalld.accounts import _verify
        assert _verify(found[1], "yeni parola 2") and not _verify(found[1], "eski parola 1")
    finally:
        await s.close()


async def test_under_journald_each_line_carries_its_priority(tmp_path: Path, daemons: Any) -> None:
    """Every line reached journald at priority 6, so `journalctl -p warning` hid reload_failed."""
    d = daemons(tmp_path, OPENAI_API_KEY="k", CWALLD_AI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")  # unreachable
    d.log.touch()
    st = os.stat(d.log)
    d.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"  # stdout is the stream journald would name
    await d.start()
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", d.url + "/api/v1/auth/register", json={"username": "jrnl", "password": "password123"})
        await call(s, "POST", d.url + "/api/v1/confessions", body["token"],
                   json={"content": "Yapay zekâya ulaşılamayan bir itiraf.", "category": "work"})  # job_retried: warnings
    await asyncio.sleep(1.0)
    assert d.kill(signal.SIGTERM) == 0
    lines = d.log.read_text().splitlines()
    assert lines and all(line.startswith(("<6>{", "<4>{", "<3>{", "<7>{")) for line in lines), lines[:5]
    assert any(line.startswith("<6>") and '"event":"request"' in line for line in lines)  # the fast access line too
    assert any(line.startswith("<6>") and '"event":"listening"' in line for line in lines)
    assert any(line.startswith("<4>") and '"event":"job_retried"' in line for line in lines)


def test_auto_format_is_console_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    from cwalld import logs

    assert logs.resolve("auto", open(os.devnull)) == "json"
    assert logs.resolve("json", None) == "json" and logs.resolve("console", None) == "console"
    import pty

    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert logs.resolve("auto", tty) == "console"
    finally:
        os.close(master)
        os.close(slave)
