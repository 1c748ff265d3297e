"""An open Server-Sent Events stream: counted per client (``[events].max_per_client``) and ended at stop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import hdrs, web

from cwalld.http import client
from cwalld.http.keys import WALL
from cwalld.live import Subscriber

HEADERS = {hdrs.CONTENT_TYPE: "text/event-stream", hdrs.CACHE_CONTROL: "no-cache", "X-Accel-Buffering": "no"}


async def send(request: web.Request, chunks: Callable[[Subscriber], AsyncIterator[bytes]]) -> web.StreamResponse:
    """Open a stream for the request's client (429 past the bound) and write ``chunks`` to it
    until they end or the client leaves."""
    live = request.app[WALL].live
    sub = live.open(client.of(request))
    response = web.StreamResponse(headers=HEADERS)
    try:
        await response.prepare(request)
        async for text in chunks(sub):
            await response.write(text)
    except ConnectionResetError:  # the client left
        pass
    finally:
        live.close(sub)
    return response
