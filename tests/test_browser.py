"""The wall in a real browser: Debian's Chromium, driven by playwright, against a daemon subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import ROOT, cwalld

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # the machine's closed network: no calls home
SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
async def browser() -> Any:
    assert os.path.exists(CHROMIUM), ".ci/run installs Debian's chromium"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        await b.close()


@pytest.fixture
async def wall(tmp_path: Path, daemons: Any, fake_ai: Any) -> Any:
    # One attempt, so that a job the fault below breaks fails at once.
    d = daemons(tmp_path, OPENAI_API_KEY="k", CWALLD_AI_BASE_URL=fake_ai.url, CWALLD_QUEUE_RETRIES="0",
                CWALLD_LIMITS_DAILY_CONFESSIONS="22")
    await d.start()
    return d


def shot(page: Page, tmp_path: Path, name: str) -> Any:
    """A screenshot in the test's output folder; also the README's copy when WALL_SCREENSHOTS is set."""
    if os.environ.get("WALL_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / name).unlink(missing_ok=True)
    return page.screenshot(path=str((SHOTS if os.environ.get("WALL_SCREENSHOTS") else tmp_path) / name), full_page=True)


class Watched:
    """A page whose every request and console error is kept, to assert on at the end."""

    def __init__(self, page: Page) -> None:
        self.page, self.requests, self.errors = page, [], []  # type: ignore[var-annotated]
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def clean(self, base: str, expected: str = "") -> None:
        """Every request went to ``base``; no console error but the one a test caused on purpose
        (the browser reports a refused request or a broken stream as an error)."""
        assert all(u.startswith(base) for u in self.requests), [u for u in self.requests if not u.startswith(base)]
        assert [e for e in self.errors if not (expected and expected in e)] == [], self.errors


async def open_wall(browser: Browser, url: str, width: int = 1200) -> Watched:
    context = await browser.new_context(viewport={"width": width, "height": 900}, locale="tr-TR")
    page = Watched(await context.new_page())
    response = await page.page.goto(url + "/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    await expect(page.page.locator("#auth-form")).to_be_visible()
    return page


async def sign_up(page: Page, username: str) -> None:
    await page.fill("#username", username)
    await page.fill("#password", "password123")
    await page.click("button[value=register]")
    await expect(page.locator("#compose")).to_be_visible()


async def test_sign_up_post_see_it_pending_then_published_live_and_relate_from_another_browser(
        browser: Browser, wall: Any, fake_ai: Any, tmp_path: Path) -> None:
    fake_ai.latency = 1.0  # long enough to see "waiting for a reply"
    a = await open_wall(browser, wall.url)
    await sign_up(a.page, "ayse_yazar")
    await a.page.evaluate("window.noReload = true")
    await a.page.fill("#content", "Tarayıcıdan yazdığım ilk itiraf bu, umarım biri anlar.")
    await expect(a.page.locator("#count")).to_contain_text("54 / 2000")
    await a.page.click("#post-form button[type=submit]")
    card = a.page.locator("#items .card").first
    await expect(card.locator(".waiting")).to_be_visible()  # pending, with no reload
    await expect(card.locator("blockquote.reply")).to_be_visible(timeout=10_000)  # published, live
    assert await a.page.evaluate("window.noReload") is True

    b = await open_wall(browser, wall.url)
    await sign_up(b.page, "okur_mehmet")
    relate = b.page.locator("#items .card").first.locator("button.relate")
    await relate.click()
    await expect(relate).to_have_attribute("aria-pressed", "true")
    await expect(card.locator("button.relate .n")).to_have_text("1")  # the first browser, live
    await a.page.screenshot(path=str(tmp_path / "wall-desktop.png"), full_page=True)
    for w in (a, b):
        w.clean(wall.url)


async def test_keyboard_only_posting_and_a_report(browser: Browser, wall: Any) -> None:
    w = await open_wall(browser, wall.url)
    page = w.page
    await page.keyboard.press("Tab")  # the skip link first
    for _ in range(10):  # then the form, by Tab alone
        if await page.evaluate("document.activeElement.id") == "username":
            break
        await page.keyboard.press("Tab")
    await page.keyboard.type("klavye_kullanici")
    await page.keyboard.press("Tab")
    await page.keyboard.type("password123")
    await page.keyboard.press("Tab")  # "Giriş"
    await page.keyboard.press("Tab")  # "Kaydol"
    await page.keyboard.press("Enter")
    await expect(page.locator("#compose")).to_be_visible()
    await page.focus("#content")
    await page.keyboard.type("Sadece klavyeyle yazıp gönderdiğim bir itiraf.")
    for _ in range(4):  # category, anonymous, send
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.type") == "submit":
            break
    await page.keyboard.press("Enter")
    card = page.locator("#items .card").first
    await expect(card.locator("blockquote.reply")).to_be_visible(timeout=10_000)
    await card.locator("summary").click()
    await card.locator("input").fill("deneme")
    await card.locator(".report button").click()
    await expect(page.locator("#status")).to_have_text("Bildirildi, teşekkürler.")
    w.clean(wall.url)


async def test_at_375_px_nothing_scrolls_sideways_and_the_screenshots(browser: Browser, wall: Any, tmp_path: Path) -> None:
    wide = await open_wall(browser, wall.url)
    await sign_up(wide.page, "genis_ekran")
    for text in ("Bir gece yarısı herkesin uyuduğu saatte buzdolabındaki son tatlıyı yedim ve sustum.",
                 "Okulda en yakın arkadaşımın sınav kağıdına bakmadım ama bakmış gibi hissettim."):
        await wide.page.fill("#content", text)
        await wide.page.click("#post-form button[type=submit]")
        await expect(wide.page.locator("#content")).to_have_value("")  # taken; the form is free again
    await expect(wide.page.locator("#items blockquote.reply")).to_have_count(2, timeout=10_000)
    narrow = await open_wall(browser, wall.url, width=375)
    await expect(narrow.page.locator("#items .card")).to_have_count(2)
    assert await narrow.page.evaluate("document.documentElement.scrollWidth") <= 375
    unlabelled = "[...document.querySelectorAll('input, select, textarea, button')].filter(e => " \
                 "!e.closest('[hidden]') && !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))" \
                 ".map(e => e.outerHTML)"
    assert await wide.page.evaluate(unlabelled) == []  # every control says what it is
    await shot(wide.page, tmp_path, "wall-desktop.png")
    await shot(narrow.page, tmp_path, "wall-375.png")
    for w in (wide, narrow):
        w.clean(wall.url)


async def test_more_on_scroll_and_the_daily_limit_as_a_sentence(browser: Browser, wall: Any) -> None:
    async with aiohttp.ClientSession(wall.url) as s:
        r = await s.post("/api/v1/auth/register", json={"username": "cok_yazan", "password": "password123"})
        token = {"Authorization": "Bearer " + (await r.json())["token"]}
        for i in range(22):  # the daily limit
            r = await s.post("/api/v1/confessions", headers=token,
                             json={"content": f"Bugün yazdığım {i + 1}. itiraf, hepsi ayrı bir dert.", "category": "love"})
            assert r.status == 202
        for _ in range(200):
            if len((await (await s.get("/api/v1/confessions?limit=50")).json())["items"]) == 22:
                break
            await asyncio.sleep(0.05)
    w = await open_wall(browser, wall.url)
    await w.page.fill("#username", "cok_yazan")
    await w.page.fill("#password", "password123")
    await w.page.click("button[value=login]")
    await expect(w.page.locator("#compose")).to_be_visible()
    await expect(w.page.locator("#items .card")).to_have_count(20)  # a page
    await w.page.locator("#more").scroll_into_view_if_needed()
    await expect(w.page.locator("#items .card")).to_have_count(22)  # the rest, by scrolling
    await expect(w.page.locator("#more")).to_be_hidden()
    await w.page.fill("#content", "Bugün bir tane daha yazmak istedim ama hakkım doldu.")
    await w.page.click("#post-form button[type=submit]")
    await expect(w.page.locator("#status")).to_contain_text("Bugünlük itiraf hakkın doldu.")
    await expect(w.page.locator("#status")).to_contain_text("yeniden yazabilirsin")
    w.clean(wall.url, expected="status of 429")


class Cable:
    """A TCP hop between the browser and the daemon that the test can cut: every connection
    through it breaks, and new ones wait until it is joined again (as a lost network does)."""

    def __init__(self, port: int) -> None:
        self.port, self.joined, self.pipes = port, asyncio.Event(), set()  # type: ignore[var-annotated]
        self.joined.set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.connect, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.joined.wait()
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        self.pipes.add(writer)
        self.pipes.add(up_w)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()
            self.pipes.discard(w)
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        self.joined.clear()
        for w in list(self.pipes):
            w.transport.abort()

    def join(self) -> None:
        self.joined.set()


async def test_a_reconnect_sends_last_event_id_and_gets_what_it_missed(browser: Browser, wall: Any) -> None:
    cable = Cable(wall.port)
    url = await cable.start()
    w = await open_wall(browser, url)
    await sign_up(w.page, "kopan_okur")
    await w.page.fill("#content", "Bağlantım koptuğunda kaçırdığım şeyleri merak ediyorum.")
    await w.page.click("#post-form button[type=submit]")
    card = w.page.locator("#items .card").first
    await expect(card.locator("blockquote.reply")).to_be_visible(timeout=10_000)
    cid = await card.get_attribute("data-id")
    requests: list[Any] = []
    w.page.on("request", lambda r: requests.append(r))

    cable.cut()  # the network goes away; the browser's reconnect waits
    await expect(w.page.locator("#offline")).to_be_visible(timeout=10_000)
    other = await open_wall(browser, wall.url)  # meanwhile someone relates to it
    await sign_up(other.page, "baska_okur")
    await other.page.locator(f"#items .card[data-id='{cid}'] button.relate").click()
    await expect(other.page.locator(f"#items .card[data-id='{cid}'] .n")).to_have_text("1")
    cable.join()
    await expect(card.locator("button.relate .n")).to_have_text("1", timeout=10_000)  # the missed event
    await expect(w.page.locator("#offline")).to_be_hidden()
    sent = [(r.url, await r.all_headers()) for r in requests]
    assert any(u.endswith("/api/v1/events") and "last-event-id" in h for u, h in sent), sent
    assert not any("/api/v1/confessions" in u for u, _ in sent), sent  # replayed, not reloaded
    w.clean(url, expected="net::ERR_INCOMPLETE_CHUNKED_ENCODING")
    other.clean(wall.url)


async def test_the_console_retries_a_failed_job_and_hides_a_confession_the_wall_drops_live(
        browser: Browser, wall: Any, tmp_path: Path) -> None:
    made = cwalld("user", "create", "yonetici", "--admin", "--password-stdin", input="password123\n",
                  env=wall.env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    db = sqlite3.connect(tmp_path / "data" / "cwall.db")
    db.execute("CREATE TRIGGER broken BEFORE UPDATE OF status ON confessions WHEN NEW.status = 'published' "
               "BEGIN SELECT RAISE(ABORT, 'injected fault: the disk gave up'); END")  # a real failed write
    db.commit()

    author = await open_wall(browser, wall.url)
    await sign_up(author.page, "yazar_zeynep")
    await author.page.fill("#content", "Bu itirafın işi önce bozulacak, sonra konsoldan yeniden denenecek.")
    await author.page.click("#post-form button[type=submit]")
    card = author.page.locator("#items .card").first
    await expect(card.locator(".waiting")).to_be_visible()

    context = await browser.new_context(viewport={"width": 1200, "height": 900}, locale="tr-TR")
    console = Watched(await context.new_page())
    response = await console.page.goto(wall.url + "/admin")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    await console.page.fill("#username", "yonetici")
    await console.page.fill("#password", "password123")
    await console.page.click("#auth-form button[type=submit]")
    await expect(console.page.locator("[data-count=failed]")).to_have_text("1", timeout=10_000)  # live
    await expect(console.page.locator("#jobs tbody tr")).not_to_have_count(0)

    db.execute("DROP TRIGGER broken")  # the disk is fine again
    db.commit()
    db.close()
    await console.page.click("#retry")
    await expect(console.page.locator("[data-count=failed]")).to_have_text("0", timeout=10_000)
    await expect(card.locator("blockquote.reply")).to_be_visible(timeout=10_000)  # the author's wall, live

    reader = await open_wall(browser, wall.url)
    await sign_up(reader.page, "okur_can")
    mine = reader.page.locator("#items .card").first
    await mine.locator("summary").click()
    await mine.locator(".report button").click()
    await expect(reader.page.locator("#status")).to_have_text("Bildirildi, teşekkürler.")
    await console.page.select_option("#mod-status", "pending")
    await console.page.select_option("#mod-status", "reported")
    item = console.page.locator("#mod-items .card").first
    await expect(item).to_contain_text("1 bildirim")
    await shot(console.page, tmp_path, "console.png")
    await item.locator("button[data-action=hide]").click()
    await expect(card).to_have_count(0)  # gone from the author's wall, live
    await expect(reader.page.locator("#items .card")).to_have_count(0)
    for x in (author, console, reader):
        x.clean(wall.url)
