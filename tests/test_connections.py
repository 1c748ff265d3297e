"""Stalled clients are dropped and connections are bounded (issue 11 §2): slowloris heads, slow
bodies and idle keep-alive connections were all still open after 30–90 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except (ConnectionError, OSError):
        pass
    return time.monotonic() - started


async def test_stalled_heads_bodies_and_idle_connections_are_closed(tmp_path: Path, daemons: Any) -> None:
    d = daemons(tmp_path, CWALLD_SERVER_HEADER_TIMEOUT="1", CWALLD_SERVER_BODY_TIMEOUT="1",
                CWALLD_SERVER_KEEPALIVE_TIMEOUT="1")
    await d.start()
    # slowloris: a request head one byte at a time, never finished
    r1, w1 = await asyncio.open_connection("127.0.0.1", d.port)
    w1.write(b"GET /api/v1/confessions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    dripping = asyncio.ensure_future(drip(w1))
    # a slow body: the head promises 1,000 bytes, 10 arrive
    r2, w2 = await asyncio.open_connection("127.0.0.1", d.port)
    w2.write(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n{\"username")
    # idle keep-alive after one request
    r3, w3 = await asyncio.open_connection("127.0.0.1", d.port)
    w3.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    took = await asyncio.gather(closed_within(r1, 6), closed_within(r2, 6), closed_within(r3, 6))
    dripping.cancel()
    assert all(t < 4 for t in took), took
    for w in (w1, w2, w3):
        w.close()


async def drip(w: asyncio.StreamWriter) -> None:
    while True:
        await asyncio.sleep(0.2)
        w.write(b"a")
        await w.drain()


async def test_connections_beyond_the_bound_are_refused_while_others_are_served(tmp_path: Path, daemons: Any) -> None:
    d = daemons(tmp_path, CWALLD_SERVER_MAX_CONNECTIONS="20", CWALLD_SERVER_HEADER_TIMEOUT="30",
                CWALLD_SERVER_KEEPALIVE_TIMEOUT="30")
    await d.start()
    held = [await asyncio.open_connection("127.0.0.1", d.port) for _ in range(20)]
    await asyncio.sleep(0.2)
    r, w = await asyncio.open_connection("127.0.0.1", d.port)  # the 21st: closed at once
    assert await closed_within(r, 2) < 1
    rr, ww = held[0]  # an existing client is still served
    ww.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in await asyncio.wait_for(rr.readuntil(b"\r\n\r\n"), 3)
    for _, hw in held:
        hw.close()
    w.close()
