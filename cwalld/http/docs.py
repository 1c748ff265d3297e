"""GET /api/docs: the OpenAPI document rendered by Swagger UI, for people trying the API.

Every asset comes from this process: Swagger UI's files from the swagger-ui-py package
(Swagger UI 5, which reads OpenAPI 3.1), the page and its start-up script from here. No CDN —
a wall's visitors load nothing from elsewhere — and a CSP that lets nothing else in. The page
is not an API operation: it is not in the document it shows.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

ASSETS = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css",
          "favicon-32x32.png": "image/png"}  # of swagger-ui-py's static/
CACHE = "public, max-age=86400"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cwalld API</title>
<link rel="icon" href="/api/docs/favicon-32x32.png">
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"""
INIT = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#docs", deepLinking: true});\n"""


def static() -> Path:
    """swagger-ui-py's static/ folder, found without importing the package (its __init__ pulls
    jinja2 and PyYAML, which serving three files does not need); the single-file build carries
    the files under its own root (Makefile: dist)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "swagger_ui" / "static"
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "swagger-ui-py is a dependency"
    return Path(list(spec.submodule_search_locations)[0]) / "static"


def add(app: web.Application) -> None:
    folder = static()
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", headers=headers)

    async def init(_: web.Request) -> web.Response:
        return web.Response(text=INIT, content_type="application/javascript", headers={"Cache-Control": CACHE})

    def asset(name: str, kind: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
        async def serve(_: web.Request) -> web.FileResponse:
            return web.FileResponse(folder / name, headers={"Cache-Control": CACHE, "Content-Type": kind})
        return serve

    app.router.add_get("/api/docs", page)
    app.router.add_get("/api/docs/init.js", init)
    for name, kind in ASSETS.items():
        app.router.add_get(f"/api/docs/{name}", asset(name, kind))
