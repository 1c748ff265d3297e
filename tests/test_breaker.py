"""During an AI outage the endpoint is not hammered: a circuit breaker per call stops calls after
``[ai].breaker_failures`` failures in a row, for ``[ai].breaker_cooldown``, but for one probe
(issue 12 §3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cwalld.breaker import Breaker
from tests.conftest import Api, test_config


def test_the_breaker_opens_probes_once_and_closes() -> None:
    now = [0.0]
    b = Breaker(3, 10.0, clock=lambda: now[0])
    for _ in range(2):
        b.failure()
    b.success()  # the streak is broken: failures must be in a row
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 9.9
    assert not b.allow()
    now[0] = 10.0
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # one probe only
    b.failure()  # the probe failed: another cooldown
    assert b.state == "open" and not b.allow()
    now[0] = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


async def scrape(api: Api) -> str:
    return await (await api.c.get("/metrics")).text()


async def test_an_outage_is_not_hammered_and_jobs_still_end_with_the_fallback(tmp_path: Path, fake_ai: Any,
                                                                              make_client: Any) -> None:
    cfg = test_config(tmp_path, fake_ai.url, ai={"breaker_failures": 3, "breaker_cooldown": 30.0})
    api = Api(await make_client(cfg))
    fake_ai.moderation_script.extend([500] * 100)
    assert (await (await api.c.get("/readyz")).json())["ai"] == "ok"
    token = await api.register()
    ids = [(await (await api.post(token, content=f"Kesinti sırasında gelen itiraf {i}.")).json())["confession"]["id"]
           for i in range(4)]
    for cid in ids:
        assert (await api.wait_status(cid, token))["ai_fallback"] is True
    # Without the breaker: 4 jobs × (4 attempts + give_up's try) = 20 calls to a server that is down.
    assert fake_ai.calls["moderations"] == 3 and fake_ai.calls["chat"] == 0
    r = await api.c.get("/readyz")
    assert r.status == 200 and (await r.json())["ai"] == "degraded"
    metrics = await scrape(api)
    assert 'cwalld_ai_breaker{call="moderation",state="open"} 1.0' in metrics
    assert 'cwalld_ai_breaker{call="chat",state="closed"} 1.0' in metrics


async def test_after_the_cooldown_one_probe_decides(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = test_config(tmp_path, fake_ai.url, ai={"breaker_failures": 2, "breaker_cooldown": 0.5},
                      queue={"retries": 0})
    api = Api(await make_client(cfg))
    token = await api.register()
    fake_ai.script.extend([503, 503])
    for i in range(2):
        cid = (await (await api.post(token, content=f"Sohbet uç noktası düşükken itiraf {i}.")).json())["confession"]["id"]
        await api.wait_status(cid, token)
    assert fake_ai.calls["chat"] == 2 and (await (await api.c.get("/readyz")).json())["ai"] == "degraded"
    await asyncio.sleep(0.6)
    fake_ai.latency = 0.3  # the probe is in flight while three more jobs want the endpoint
    ids = [(await (await api.post(token, content=f"Soğuma sonrası itiraf {i}.")).json())["confession"]["id"]
           for i in range(3)]
    replies = [await api.wait_status(cid, token) for cid in ids]
    assert fake_ai.calls["chat"] == 3  # 2 before, then the one probe; the others fell back at once
    assert sorted(c["ai_fallback"] for c in replies) == [False, True, True]
    assert (await (await api.c.get("/readyz")).json())["ai"] == "ok"
    fake_ai.latency = 0.0
    other = await api.register()  # [limits].daily_confessions is 5
    cid = (await (await api.post(other, content="Devre kapandıktan sonra gelen itiraf.")).json())["confession"]["id"]
    assert (await api.wait_status(cid, other))["ai_fallback"] is False


async def test_no_api_key_is_disabled(tmp_path: Path, make_client: Any) -> None:
    api = Api(await make_client(test_config(tmp_path)))
    r = await api.c.get("/readyz")
    assert r.status == 200 and (await r.json())["ai"] == "disabled"
