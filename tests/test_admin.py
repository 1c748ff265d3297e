"""Reports, moderation and the operator's controls: admin API and CLI over the control socket."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cwalld.http.keys import WALL
from cwalld.accounts import create_user
from tests.conftest import Api, cwalld, free_port, test_config
from tests.test_daemon import call


@pytest.fixture
async def api(tmp_path: Path, fake_ai: Any, make_client: Any) -> Api:
    return Api(await make_client(test_config(tmp_path, fake_ai.url, moderation={
        "auto_hide_reports": 3, "report_min_account_age_hours": 0})))


async def admin_token(api: Api, name: str = "yonetici") -> str:
    await create_user(api.c.app[WALL].storage, name, "password123", admin=True)
    r = await api.c.post("/api/v1/auth/login", json={"username": name, "password": "password123"})
    return (await r.json())["token"]


async def test_reports_hide_at_the_threshold_and_an_admin_restores(api: Api) -> None:
    author = await api.register()
    readers = [await api.register() for _ in range(3)]
    cid = (await (await api.post(author)).json())["confession"]["id"]
    await api.wait_status(cid, author)
    await api.c.get("/api/v1/confessions")  # cached with the confession in it
    path = f"/api/v1/confessions/{cid}/report"
    for _ in range(3):  # the same user, three times: one report
        r = await api.c.post(path, json={"reason": "spam"}, headers=api.auth(readers[0]))
        assert r.status == 202
    r = await api.c.post(path, headers=api.auth(readers[1]))  # no body: a reason is optional
    assert r.status == 202
    assert (await api.confession(cid))["status"] == "published"
    r = await api.c.post(path, json={"reason": "x" * 501}, headers=api.auth(readers[2]))
    assert r.status == 422
    r = await api.c.post(path, json={"reason": "hakaret"}, headers=api.auth(readers[2]))
    assert r.status == 202
    # hidden: out of every feed at once, 404 to others, visible to its author
    assert (await (await api.c.get("/api/v1/confessions")).json())["items"] == []
    assert await api.confession(cid, readers[0]) == {"http_status": 404}
    assert (await api.confession(cid, author))["status"] == "hidden"
    assert (await api.c.post(path, headers=api.auth(readers[0]))).status == 404

    admin = await admin_token(api)
    listed = await (await api.c.get("/api/v1/admin/confessions?status=hidden", headers=api.auth(admin))).json()
    assert [c["id"] for c in listed["items"]] == [cid] and listed["items"][0]["author"] is None
    assert listed["items"][0]["report_count"] == 3
    r = await api.c.post(f"/api/v1/admin/confessions/{cid}/restore", headers=api.auth(admin))
    assert r.status == 200 and (await r.json())["confession"]["status"] == "published"
    assert [c["id"] for c in (await (await api.c.get("/api/v1/confessions")).json())["items"]] == [cid]
    r = await api.c.post(f"/api/v1/admin/confessions/{cid}/restore", headers=api.auth(admin))
    assert r.status == 404  # already published
    r = await api.c.post(f"/api/v1/admin/confessions/{cid}/hide", headers=api.auth(admin))
    assert (await r.json())["confession"]["status"] == "hidden"
    assert (await (await api.c.get("/api/v1/confessions")).json())["items"] == []
    r = await api.c.get("/api/v1/admin/confessions?status=published", headers=api.auth(admin))
    assert r.status == 422


async def test_admin_lists_rejected_and_restores_with_a_fallback_reply(api: Api) -> None:
    author = await api.register()
    cid = (await (await api.post(author, content="Yanlışlıkla işaretlenen itiraf [flag:harassment]")).json())["confession"]["id"]
    await api.wait_status(cid, author, status="rejected")
    admin = await admin_token(api)
    listed = await (await api.c.get("/api/v1/admin/confessions?status=rejected", headers=api.auth(admin))).json()
    assert listed["items"][0]["rejection_reason"] == "moderation: harassment"
    c = (await (await api.c.post(f"/api/v1/admin/confessions/{cid}/restore", headers=api.auth(admin))).json())["confession"]
    assert c["status"] == "published" and c["ai_fallback"] is True and c["ai_response"]


async def test_reported_confessions_still_on_the_wall_are_listed_with_their_report_counts(api: Api) -> None:
    author, a, b = await api.register(), await api.register(), await api.register()
    quiet, twice = [(await (await api.post(author)).json())["confession"]["id"] for _ in range(2)]
    for cid in (quiet, twice):
        await api.wait_status(cid, author)
    for reader in (a, b):
        assert (await api.c.post(f"/api/v1/confessions/{twice}/report", headers=api.auth(reader))).status == 202
    admin = await admin_token(api)
    listed = await (await api.c.get("/api/v1/admin/confessions?status=reported", headers=api.auth(admin))).json()
    assert [(c["id"], c["status"], c["report_count"]) for c in listed["items"]] == [(twice, "published", 2)]
    assert listed["items"][0]["author"] is None  # anonymous, also to admins


ADMIN_CALLS = [
    ("GET", "/api/v1/admin/queue", None),
    ("POST", "/api/v1/admin/queue/clean", {"grace_seconds": 0}),
    ("POST", "/api/v1/admin/queue/retry-failed", None),
    ("POST", "/api/v1/admin/cache/clear", {"scope": "all"}),
    ("GET", "/api/v1/admin/jobs", None),
    ("POST", "/api/v1/admin/jobs/sessions_purge/run", None),
    ("GET", "/api/v1/admin/confessions?status=pending", None),
    ("POST", "/api/v1/admin/users/hedef_uye/admin", None),
    ("DELETE", "/api/v1/admin/users/hedef_uye/admin", None),
]


async def test_every_admin_endpoint_403_for_users_and_works_for_admins(api: Api) -> None:
    user, target = await api.register("sade_uye"), await api.register("hedef_uye")
    admin = await admin_token(api)
    for method, path, payload in ADMIN_CALLS:
        r = await api.c.request(method, path, json=payload, headers=api.auth(user))
        assert r.status == 403, (method, path)
        r = await api.c.request(method, path, json=payload)
        assert r.status == 401, (method, path)
        r = await api.c.request(method, path, json=payload, headers=api.auth(admin))
        assert r.status == 200, (method, path, await r.text())
    me = await (await api.c.get("/api/v1/me", headers=api.auth(target))).json()
    assert me["user"]["is_admin"] is False  # granted, then revoked


async def test_admin_endpoint_answers(api: Api) -> None:
    admin = await admin_token(api)
    h = api.auth(admin)
    jobs = (await (await api.c.get("/api/v1/admin/jobs", headers=h)).json())["jobs"]
    assert [j["name"] for j in jobs] == ["popular", "recovery", "queue_clean", "sessions_purge", "backup"]
    assert all(j["next_run"].endswith("Z") for j in jobs)
    r = await api.c.post("/api/v1/admin/jobs/nope/run", headers=h)
    assert r.status == 404
    r = await api.c.post("/api/v1/admin/cache/clear", json={"scope": "everything"}, headers=h)
    assert r.status == 422 and "scope" in (await r.json())["error"]["fields"]
    r = await api.c.post("/api/v1/admin/queue/clean", json={"grace_seconds": "soon"}, headers=h)
    assert r.status == 422
    r = await api.c.post("/api/v1/admin/users/ghost/admin", headers=h)
    assert r.status == 404
    r = await api.c.post("/api/v1/admin/users/yonetici/admin", headers=h)
    assert (await r.json())["user"]["is_admin"] is True
    assert (await (await api.c.post("/api/v1/admin/jobs/popular/run", headers=h)).json()) == {
        "result": {"newly_popular": 0, "badges_awarded": 0}}


async def test_cli_against_a_running_daemon(tmp_path: Path, daemons: Any) -> None:
    d = daemons(tmp_path)
    await d.start()
    async with aiohttp.ClientSession() as s:
        _, body = await call(s, "POST", d.url + "/api/v1/auth/register", json={"username": "kerem", "password": "password123"})
        status, _ = await call(s, "POST", d.url + "/api/v1/confessions", body["token"],
                               json={"content": "Komut satırından görülecek itiraf.", "category": "work"})
        assert status == 202
    await asyncio.sleep(0.3)
    run = lambda *args: cwalld(*args, cwd=tmp_path, env=d.env)  # noqa: E731
    r = run("queue", "stats")  # no API key: the job ended with a fallback reply, and says so
    assert r.returncode == 0 and "fallback   1" in r.stdout and "completed  0" in r.stdout, r
    assert "waiting    0" in r.stdout and "held       0" in r.stdout
    r = run("queue", "stats", "--json")
    assert '"fallback": 1' in r.stdout
    r = run("queue", "clean", "--grace", "0")
    assert r.returncode == 0 and "removed  1" in r.stdout
    assert "retried  0" in run("queue", "retry-failed").stdout
    assert "cleared  feed" in run("cache", "clear", "feed").stdout
    r = run("jobs", "list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["job", "schedule", "next"]
    popular = next(line for line in r.stdout.splitlines() if line.startswith("popular"))
    assert popular.count(" UTC") == 1 and popular.endswith("never"), popular  # a new database: no run yet
    r = run("jobs", "run", "popular")
    assert r.returncode == 0 and "newly_popular   0" in r.stdout
    popular = next(line for line in run("jobs", "list").stdout.splitlines() if line.startswith("popular"))
    assert popular.count(" UTC") == 2, popular  # next and last run, each with its zone
    r = run("jobs", "run", "nope")
    assert r.returncode == 1 and "no job 'nope'" in r.stderr
    r = run("user", "promote", "kerem")
    assert r.returncode == 0 and "kerem is now an admin" in r.stdout
    r = run("user", "demote", "kerem")  # the only admin: refused, in one line
    assert r.returncode == 1 and r.stderr.strip() == "cwalld: the wall must keep at least one admin"
    sock = tmp_path / "data" / f"cwalld-{d.port}.sock"  # one per daemon: named by its port
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    assert await d.stop(signal.SIGTERM) == 0
    assert not sock.exists()
    for args in (("queue", "stats"), ("jobs", "list"), ("cache", "clear", "all")):
        r = run(*args)
        assert r.returncode == 1
        assert r.stderr.strip() == f"cwalld: the daemon is not running (no control socket at ./data/cwalld-{d.port}.sock)"


async def test_two_daemons_on_one_machine_each_have_their_socket(tmp_path: Path, daemons: Any) -> None:
    """Both defaulted to ./data/cwalld.sock: the second ran without one after a warning, and the
    CLI talked to whichever."""
    a, b = daemons(tmp_path), daemons(tmp_path, CWALLD_STORAGE_PATH=str(tmp_path / "b.db"))
    await a.start()
    await b.start()
    run = lambda *args: cwalld(*args, cwd=tmp_path, env={k: v for k, v in a.env.items()  # noqa: E731
                                                          if k != "CWALLD_SERVER_PORT"})
    for d in (a, b):
        r = run("jobs", "list", "--port", str(d.port))
        assert r.returncode == 0 and "popular" in r.stdout, r
    r = run("queue", "stats", "--socket", f"./data/cwalld-{b.port}.sock", "--json")
    assert r.returncode == 0 and '"waiting": 0' in r.stdout
    # the same socket named for a third: a start error, not a daemon without a control socket
    third = subprocess.run([sys.executable, "-m", "cwalld"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                           env={**a.env, "CWALLD_SERVER_PORT": str(free_port()), "CWALLD_STORAGE_PATH": str(tmp_path / "c.db"),
                                "CWALLD_SERVER_CONTROL_SOCKET": f"./data/cwalld-{a.port}.sock"})
    assert third.returncode == 1 and "another running cwalld listens on it" in third.stderr, third.stderr[-500:]
    assert (await asyncio.to_thread(run, "jobs", "list", "--port", str(a.port))).returncode == 0  # a is untouched


def test_job_times_are_shown_in_the_schedules_zone() -> None:
    """`jobs list` showed times without a zone (they were UTC, the cron schedules local)."""
    from cwalld.cli import local_time

    assert local_time("2026-12-03T09:00:00.123Z", "Europe/Istanbul") == "2026-12-03 12:00:00 +03"
    assert local_time("2026-12-03T09:00:00Z", "UTC") == "2026-12-03 09:00:00 UTC"
