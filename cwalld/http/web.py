"""GET / (the wall) and GET /admin (the operator's console): pages from cwalld/web, their files
under /static/ named by content hash.

The files are package data, so the single executable carries them. A hashed name changes with
the content, so the files are cached for a year and a new release is never served stale; the
pages themselves are revalidated. A file names another as ``{{name}}`` (an ES module import, a
stylesheet link), replaced here by its hashed name — the whole of the "build". Nothing loads
from elsewhere: the CSP allows only this origin and no inline script. The pages talk to the
public API only (/api/v1), like any other client; the console's powers are the admin API's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from cwalld.http.keys import WALL

# In dependency order: a file may name only those before it.
FILES = {"common.js": "application/javascript", "style.css": "text/css", "app.js": "application/javascript",
         "admin.js": "application/javascript"}
PAGES = {"/": "index.html", "/admin": "admin.html"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
YEAR = "public, max-age=31536000, immutable"
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}


def add(app: web.Application) -> None:
    folder = resources.files("cwalld") / "web"
    hashed: dict[str, str] = {}

    def named(text: str) -> str:
        for name, target in hashed.items():
            text = text.replace("{{" + name + "}}", target)
        return text

    for name, kind in FILES.items():
        data = named((folder / name).read_text(encoding="utf-8")).encode()
        stem, ext = name.rsplit(".", 1)
        hashed[name] = f"{stem}.{hashlib.sha256(data).hexdigest()[:12]}.{ext}"
        app.router.add_get(f"/static/{hashed[name]}", asset(data, kind))
    for path, name in PAGES.items():
        app.router.add_get(path, page(named((folder / name).read_text(encoding="utf-8"))))


def page(text: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        limits = request.app[WALL].config.limits  # a reload's limits show at once
        body = text.replace("{{min}}", str(limits.content_min)).replace("{{max}}", str(limits.content_max))
        return web.Response(text=body, content_type="text/html", headers=HEADERS)
    return serve


def asset(data: bytes, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=data, content_type=kind,
                            headers={"Cache-Control": YEAR, "X-Content-Type-Options": "nosniff"})
    return serve
