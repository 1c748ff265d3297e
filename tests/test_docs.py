"""GET /api/docs: the OpenAPI document in Swagger UI, every asset served by the daemon itself."""

from __future__ import annotations

import re
from typing import Any


async def test_api_docs_render_the_document_from_local_assets(client: Any) -> None:
    r = await client.get("/api/docs")
    assert r.status == 200 and r.content_type == "text/html"
    page = await r.text()
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp  # nothing from elsewhere may load
    assert not re.search(r"https?://", page)  # no CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(assets) == ["/api/docs/favicon-32x32.png", "/api/docs/init.js",
                              "/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css"]
    types = {}
    for asset in assets:
        a = await client.get(asset)
        assert a.status == 200 and "max-age" in a.headers["Cache-Control"], asset
        types[asset.rsplit(".", 1)[1]] = a.content_type
        body = await a.read()
        if asset.endswith("swagger-ui-bundle.js"):
            assert b"SwaggerUIBundle" in body and b"isOAS31" in body  # a Swagger UI that reads OpenAPI 3.1
        if asset.endswith("init.js"):
            assert b'"/api/v1/openapi.json"' in body
    assert types == {"png": "image/png", "js": "application/javascript", "css": "text/css"}
    assert (await (await client.get("/api/v1/openapi.json")).json())["openapi"] == "3.1.0"
    missing = await client.get("/api/docs/../../etc/passwd")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
