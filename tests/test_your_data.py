"""People's own data: the export of everything the wall keeps about them (issue 17 §2)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cwalld import config as configmod
from tests.conftest import Api, test_config


async def test_an_export_holds_everything_about_the_caller_and_nothing_of_anyone_else(
        tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    api = Api(await make_client(configmod.replace(test_config(tmp_path, fake_ai.url), privacy={"exports_per_day": 2},
                                                  moderation={"report_min_account_age_hours": 0})))
    ayse, bora = await api.register("ayse_veri"), await api.register("bora_baska")
    secret = (await (await api.post(ayse, "Kimse bilmiyor ama bu benim gizli itirafım.")).json())["confession"]["id"]
    named = (await (await api.post(ayse, "Bunu adımla yazıyorum, saklamıyorum.", anonymous=False)).json())["confession"]["id"]
    other = (await (await api.post(bora, "Bora'nın kimseye söylemediği başka bir şey.")).json())["confession"]["id"]
    for cid, token in ((secret, ayse), (named, ayse), (other, bora)):
        await api.wait_status(cid, token)
    assert (await api.c.put(f"/api/v1/confessions/{other}/empathy", headers=api.auth(ayse))).status == 200
    assert (await api.c.post(f"/api/v1/confessions/{other}/report", json={"reason": "spam gibi"},
                             headers=api.auth(ayse))).status == 202
    assert (await api.c.put(f"/api/v1/confessions/{secret}/empathy", headers=api.auth(bora))).status == 200

    r = await api.c.get("/api/v1/me/export", headers=api.auth(ayse))
    assert r.status == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="cwall-export-ayse_veri.json"'
    assert r.headers["Cache-Control"] == "no-store"
    data = await r.json()
    assert data["user"]["username"] == "ayse_veri" and data["exported_at"].endswith("Z")
    mine = {c["id"]: c for c in data["confessions"]}
    assert set(mine) == {secret, named}  # the anonymous one too: she is its author
    assert mine[secret]["anonymous"] is True and mine[named]["anonymous"] is False
    assert mine[secret]["status"] == "published" and mine[secret]["ai_response"] and mine[secret]["empathy_count"] == 1
    assert [e["confession_id"] for e in data["empathies"]] == [other]
    assert [(x["confession_id"], x["reason"]) for x in data["reports"]] == [(other, "spam gibi")]
    assert len(data["sessions"]) == 1 and set(data["sessions"][0]) == {"created_at", "expires_at"}
    text = await r.text()
    for never in (ayse, hashlib.sha256(ayse.encode()).hexdigest(), "bora_baska", "Bora'nın", bora):
        assert never not in text  # no token, no token hash, nothing of another user

    assert (await api.c.get("/api/v1/me/export", headers=api.auth(ayse))).status == 200
    third = await api.c.get("/api/v1/me/export", headers={**api.auth(ayse), "Accept-Language": "tr"})
    error = (await third.json())["error"]
    assert third.status == 429 and int(third.headers["Retry-After"]) > 0
    assert error == {"code": "rate_limited", "message": "Günde en çok 2 kez veri dışa aktarılabilir."}
    assert (await api.c.get("/api/v1/me/export", headers=api.auth(bora))).status == 200  # per person
    assert (await api.c.get("/api/v1/me/export")).status == 401
