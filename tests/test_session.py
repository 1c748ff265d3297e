"""The page's sign-in: an HttpOnly session cookie, CSRF-checked writes; Bearer tokens unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cwalld import config as configmod
from tests.conftest import Api, test_config

POST = {"content": "Çerezle oturum açıp yazdığım itiraf.", "category": "other"}


def cookies_of(response: Any) -> dict[str, str]:
    return {m.key: m.output(header="").strip() for m in response.cookies.values()}


async def test_a_cookie_session_signs_in_the_page_and_its_writes_need_the_csrf_value(client: Any) -> None:
    r = await client.post("/api/v1/auth/register", json={"username": "cerez", "password": "password123",
                                                          "session": "cookie"})
    body = await r.json()
    assert r.status == 201 and "token" not in body and body["user"]["username"] == "cerez"  # scripts never see it
    set_cookies = cookies_of(r)
    assert "HttpOnly" in set_cookies["cwall_session"] and "SameSite=Lax" in set_cookies["cwall_session"]
    assert "HttpOnly" not in set_cookies["cwall_csrf"] and "Secure" not in set_cookies["cwall_session"]  # plain HTTP
    csrf = r.cookies["cwall_csrf"].value
    me = await client.get("/api/v1/me")  # the jar sends the cookies
    assert me.status == 200 and (await me.json())["user"]["username"] == "cerez"

    no_token = await client.post("/api/v1/confessions", json=POST)
    assert no_token.status == 403 and "X-CSRF-Token" in (await no_token.json())["error"]["message"]
    wrong = await client.post("/api/v1/confessions", json=POST, headers={"X-CSRF-Token": "x" * 32})
    assert wrong.status == 403
    elsewhere = await client.post("/api/v1/confessions", json=POST,
                                  headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert elsewhere.status == 403 and "another site" in (await elsewhere.json())["error"]["message"]
    own = f"http://{client.host}:{client.port}"
    ok = await client.post("/api/v1/confessions", json=POST, headers={"X-CSRF-Token": csrf, "Origin": own})
    assert ok.status == 202, await ok.text()

    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status == 204 and set(cookies_of(out)) == {"cwall_session", "cwall_csrf"}  # both cleared
    assert (await client.get("/api/v1/me")).status == 401  # the token behind the cookie is revoked


async def test_bearer_tokens_need_no_csrf_and_a_stale_cookie_is_a_guest(client: Any) -> None:
    api = Api(client)
    token = await api.register()
    r = await client.post("/api/v1/confessions", json=POST, headers=api.auth(token))  # no cookie, no CSRF
    assert r.status == 202
    client.session.cookie_jar.update_cookies({"cwall_session": "a" * 43})
    assert (await client.get("/api/v1/confessions")).status == 200  # a guest, not a 401 on a public page
    assert (await client.get("/api/v1/me")).status == 401


async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(tmp_path: Path, fake_ai: Any, make_client: Any) -> None:
    cfg = configmod.replace(test_config(tmp_path, fake_ai.url), server={"trusted_proxies": ["127.0.0.1/32"]})
    client = await make_client(cfg)
    r = await client.post("/api/v1/auth/register", headers={"X-Forwarded-Proto": "https"},
                          json={"username": "guvenli", "password": "password123", "session": "cookie"})
    assert r.status == 201 and "Secure" in cookies_of(r)["cwall_session"]
