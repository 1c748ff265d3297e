"""Reload is explicit: every key a reload may change reaches the part that uses it, while jobs
run; every other key is named by some part as restart-only (issue 10, "reload is explicit")."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from cwalld import app as appmod
from cwalld import config as configmod
from cwalld.app import DAEMON, Daemon
from cwalld.config import Config
from tests.conftest import Api

CHANGED_TEXT = {
    "ai.api_key": "another-key", "ai.api_key_file": "", "ai.base_url": None, "ai.model": "another-model", "ai.language": "en",
    "ai.moderation_model": "another-moderation", "ai.crisis_message": "Yardım hattı: 182.",
    "ai.fallback_replies": ["Bir yedek yanıt daha."],
    "log.level": "debug", "log.format": "json", "server.metrics_token": "s3cret",
    "popular.schedule": "0 */3 * * *", "scheduler.timezone": "Europe/Istanbul", "scheduler.recovery": "*/2 * * * *",
    "scheduler.queue_clean": "15 5 * * *", "scheduler.sessions_purge": "45 5 * * *",
    "server.trusted_proxies": ["10.0.0.0/8"], "moderation.on_unavailable": "hold",
    "backup.schedule": "0 2 * * *", "backup.dir": "/var/backups/cwalld", "privacy.on_account_delete": "detach",
}


def changed(key: str, value: Any, fake_url: str) -> Any:
    if key in CHANGED_TEXT:
        return CHANGED_TEXT[key] or fake_url
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, list):
        return [*value, value[-1] if value else "Bir yedek yanıt daha."]
    raise AssertionError(f"test does not know how to change {key}")


# Where each reloadable section is read from, in the running daemon.
SEEN: dict[str, Callable[[Daemon], Any]] = {
    "queue": lambda d: d.queue.settings,
    "ai": lambda d: d.wall.replies.ai.settings,  # type: ignore[attr-defined]
    "limits": lambda d: d.wall.confessions.config.limits,
    "auth": lambda d: d.wall.accounts.config.auth,
    "moderation": lambda d: d.wall.confessions.config.moderation,
    "cache": lambda d: d.wall.views.ttl,
    "log": lambda d: d.config.log,
    "server": lambda d: d.wall.config.server,
    "popular": lambda d: d.wall.jobs.config.popular,
    "scheduler": lambda d: d.wall.jobs.config.scheduler,
    "safety": lambda d: d.wall.replies.safety.settings,
    "events": lambda d: d.wall.live.settings,
    "backup": lambda d: d.wall.jobs.config.backup,
    "privacy": lambda d: d.wall.accounts.config.privacy,
}


def toml(raw: dict[str, dict[str, Any]]) -> str:
    return "\n".join(f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                     for section, values in raw.items())


async def test_every_reloadable_key_takes_effect_while_jobs_run(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    path = tmp_path / "cwalld.toml"
    base: dict[str, dict[str, Any]] = {
        "storage": {"path": str(tmp_path / "cwall.db")}, "server": {"control_socket": str(tmp_path / "c.sock")},
        "queue": {"backoff": [0.05, 0.1], "job_timeout": 2.0, "shutdown_grace": 2.0},
        "ai": {"api_key": "test-key", "base_url": fake_ai.url, "request_timeout": 1.0}, "log": {"level": "warning"},
    }
    path.write_text(toml(base))
    client = await make_client(configmod.load(path))
    api, daemon = Api(client), client.app[DAEMON]
    restart = set(appmod.restart_keys(daemon))

    new: dict[str, dict[str, Any]] = {s: dict(v) for s, v in base.items()}
    reloadable = []
    for section in configmod.SECTIONS:
        for f in dataclasses.fields(getattr(daemon.config, section)):
            key = f"{section}.{f.name}"
            if key in restart:
                continue
            reloadable.append(key)
            new.setdefault(section, {})[f.name] = changed(key, getattr(getattr(daemon.config, section), f.name),
                                                          fake_ai.url)
    new["ai"]["base_url"] = fake_ai.url  # the same fake AI, reached by a new client
    (tmp_path / "ai-api-key").write_text("another-key-from-a-file\n")  # a key file is read again
    new["ai"]["api_key_file"] = str(tmp_path / "ai-api-key")
    del new["ai"]["api_key"]

    token = await api.register()
    fake_ai.latency = 0.3  # jobs are in flight when the reload comes
    ids = [(await (await api.post(token, content=f"Yeniden yüklemede uçuştaki itiraf {i}.")).json())["confession"]["id"]
           for i in range(4)]
    await asyncio.sleep(0.1)
    old_ai = daemon.ai
    path.write_text(toml(new))
    await appmod.reload(daemon)
    fake_ai.latency = 0.0

    want = configmod.load(path)
    for key in reloadable:
        section, name = key.split(".")
        assert section in SEEN, f"no check says where {section} is read"
        seen = getattr(SEEN[section](daemon), name)
        assert seen == getattr(getattr(want, section), name), f"{key}: the running daemon still uses {seen!r}"
    assert daemon.ai is not old_ai and daemon.wall.replies.ai is daemon.ai
    assert {j.name: j.schedule for j in daemon.scheduler.jobs.values()} == {
        "popular": "0 */3 * * *", "recovery": "*/2 * * * *", "queue_clean": "15 5 * * *", "sessions_purge": "45 5 * * *",
        "backup": "0 2 * * *"}
    assert str(daemon.scheduler.tz) == "Europe/Istanbul" and daemon.scheduler.claim_timeout == want.scheduler.claim_timeout
    assert daemon.storage.w.slow_query_ms == daemon.storage.r.slow_query_ms == want.log.slow_query_ms  # type: ignore[attr-defined]
    assert (await client.get("/metrics")).status == 401  # the new metrics token is asked for
    for cid in ids:  # the jobs in flight finished, once each
        assert (await api.wait_status(cid, token))["ai_fallback"] is False
    assert isinstance(want, Config)
