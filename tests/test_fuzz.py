"""The API fuzzed against its own OpenAPI document (schemathesis, every check, fixed seed):
no 5xx, no response that breaks the document, no request the document allows that the server
refuses or the other way round (issue 11 §6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import cwalld

ROOT = Path(__file__).resolve().parent.parent
ST = str(Path(sys.executable).parent / "st")


def fuzz(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ST, "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run", f"{url}/api/v1/openapi.json", "-H", f"Authorization: Bearer {token}", "--checks", "all",
         "--seed", "20261130", "--max-examples", "80", "--request-timeout", "10", "--no-color",
         "--exclude-operation-id", "logout",  # it would revoke the fuzzer's own token
         "--exclude-operation-id", "streamEvents",  # event streams never end (tests/test_live.py)
         "--exclude-operation-id", "streamAdminEvents",
         *args], capture_output=True, text=True, timeout=170, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})


async def login(s: aiohttp.ClientSession, url: str, username: str, register: bool) -> str:
    path = "/api/v1/auth/register" if register else "/api/v1/auth/login"
    async with s.post(url + path, json={"username": username, "password": "password123"}) as r:
        return str((await r.json())["token"])


async def test_the_api_holds_to_its_own_document_under_fuzzing(tmp_path: Path, daemons: Any) -> None:
    d = daemons(tmp_path, CWALLD_LIMITS_DAILY_CONFESSIONS="100000", CWALLD_LOG_LEVEL="warning")
    admin = cwalld("user", "create", "patron", "--admin", "--password-stdin", input="password123\n",
                   env={**d.env}, cwd=tmp_path)
    assert admin.returncode == 0, admin.stderr
    await d.start()
    async with aiohttp.ClientSession() as s:
        user_token = await login(s, d.url, "fuzz_user", register=True)
        admin_token = await login(s, d.url, "patron", register=False)
    as_user = fuzz(d.url, user_token, "--exclude-tag", "admin")
    as_admin = fuzz(d.url, admin_token, "--include-tag", "admin")
    print(summary(as_user.stdout), summary(as_admin.stdout), sep="\n")
    log = d.log.read_text()
    assert "unhandled_error" not in log and "Traceback" not in log
    assert as_user.returncode == 0, summary(as_user.stdout)
    assert as_admin.returncode == 0, summary(as_admin.stdout)


def summary(out: str) -> str:
    """What failed, where and with which status, each line cut short (bodies can be huge)."""
    keep = ("___", "- ST", "[", "curl", "generated", "Failures", "❌")
    return "\n".join(line[:300] for line in out.splitlines() if line.strip().startswith(keep))
