"""The AI's HTTP client against servers that answer byte for byte what a test says: every framing
a server may choose, kept-alive connections that close under it, answers too large, malformed or
too late, and TLS checked against a trust store."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cwalld.cli import run
from cwalld.http_client import HTTPClient, HTTPProtocolError

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'
Answer = Callable[[int], list[bytes] | None]  # request number → the pieces to send (None: say nothing)


class RawServer:
    """Answers each request with ``answer(n)``'s pieces, written one by one; records what came."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{port}/v1"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                pieces = self.answer(len(self.requests))
                if pieces is None:
                    await asyncio.sleep(3600)
                for piece in pieces or []:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[RawServer] = []
    clients: list[HTTPClient] = []

    async def start(answer: Answer, close_after: bool = False, timeout: float = 2.0, **kw: Any) -> tuple[RawServer, HTTPClient]:
        server = await RawServer(answer, close_after).start(kw.pop("tls", None))
        client = HTTPClient(server.url, {"Authorization": "Bearer k"}, timeout, **kw)
        servers.append(server)
        clients.append(client)
        return server, client

    yield start
    for c in clients:
        await c.close()
    for s in servers:
        await s.stop()


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i:i + 1] for i in range(len(raw))]


async def test_requests_share_one_kept_alive_connection_and_say_who_asks(serve: Any) -> None:
    server, client = await serve(lambda n: [OK])
    for _ in range(3):
        r = await client.request("POST", "/chat/completions", b'{"a": 1}')
        assert (r.status, r.body, r.headers["content-type"]) == (200, b'{"ok": true}', "application/json")
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and first.endswith(b'\r\n\r\n{"a": 1}')
    assert b"Authorization: Bearer k\r\n" in first and b"Content-Length: 8\r\n" in first
    assert b"Host: 127.0.0.1:" in first


async def test_a_chunked_answer_in_single_bytes_with_extensions_and_trailers(serve: Any) -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;name=x\r\n{\"ok\r\n7\r\n\": true\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    server, client = await serve(lambda n: bytewise(raw) if n == 1 else [OK])
    assert (await client.request("GET", "/models")).body == b'{"ok": true}'
    assert (await client.request("GET", "/models")).body == b'{"ok": true}'  # in step after the trailers
    assert server.connections == 1


async def test_a_gzip_answer_is_decoded(serve: Any) -> None:
    body = gzip.compress(b'{"ok": true}')
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    _, client = await serve(lambda n: [raw])
    assert (await client.request("GET", "/models")).body == b'{"ok": true}'


async def test_an_answer_framed_by_the_connections_end_and_connection_close(serve: Any) -> None:
    until_end = b'HTTP/1.1 200 OK\r\n\r\n{"ok": true}'
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    server, client = await serve(lambda n: [until_end] if n == 1 else [closing], close_after=True)
    assert (await client.request("GET", "/models")).body == b'{"ok": true}'
    assert (await client.request("GET", "/models")).body == b"{}"
    assert (await client.request("GET", "/models")).body == b"{}"
    assert server.connections == 3  # none reused after its server said it ends


async def test_a_connection_the_server_closed_while_idle_is_not_used(serve: Any) -> None:
    server, client = await serve(lambda n: [OK], close_after=True)  # closes after each answer
    for _ in range(3):
        assert (await client.request("GET", "/models")).status == 200
        await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_an_informational_answer_is_skipped(serve: Any) -> None:
    _, client = await serve(lambda n: [b"HTTP/1.1 100 Continue\r\n\r\n", OK])
    assert (await client.request("POST", "/moderations", b"{}")).body == b'{"ok": true}'


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n" * 2,
    b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000,
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 70000,
])
async def test_an_answer_larger_than_allowed_is_refused(serve: Any, raw: bytes) -> None:
    _, client = await serve(lambda n: [raw, b"y" * 2048], max_body=4096)
    with pytest.raises(HTTPProtocolError):
        await client.request("GET", "/models")


@pytest.mark.parametrize("raw", [
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1000\r\n",  # looped for ever on the event loop
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}",  # a digit to str.isdigit, not to int()
    b"HTTP/1.1 \xb200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
], ids=["not-http", "header", "length", "chunk-size", "negative-chunk", "0x-chunk", "unicode-length",
        "unicode-status", "br", "bad-gzip"])
async def test_a_malformed_answer_is_a_protocol_error(serve: Any, raw: bytes) -> None:
    _, client = await serve(lambda n: [raw])
    with pytest.raises(HTTPProtocolError):
        await client.request("GET", "/models")


async def test_a_connection_lost_mid_answer_is_a_connection_error(serve: Any) -> None:
    _, client = await serve(lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"half"], close_after=True)
    with pytest.raises(ConnectionError, match="before its answer was complete"):
        await client.request("GET", "/models")


async def test_a_late_answer_never_reaches_the_next_request(serve: Any) -> None:
    late = b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"late!!"'

    def answer(n: int) -> list[bytes] | None:
        return [b"", *([b""] * 300), late] if n == 1 else [OK]  # ~0.3 s of nothing, then the answer
    server, client = await serve(answer, timeout=0.1)
    with pytest.raises(TimeoutError):
        await client.request("GET", "/models")
    await asyncio.sleep(0.5)
    assert (await client.request("GET", "/models")).body == b'{"ok": true}'
    assert server.connections == 2


async def test_an_unanswered_request_times_out_within_its_bound(serve: Any) -> None:
    _, client = await serve(lambda n: None, timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await client.request("GET", "/models")
    assert 0.2 <= loop.time() - started < 1.0  # against an hour of silence


async def test_a_request_on_a_kept_connection_is_bounded_too(serve: Any) -> None:
    server, client = await serve(lambda n: [OK] if n == 1 else None, timeout=0.2)
    assert (await client.request("GET", "/models")).body == b'{"ok": true}'
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await client.request("GET", "/models")  # on the kept-alive connection: never answered
    assert 0.2 <= loop.time() - started < 1.0
    assert server.connections == 1


async def test_tls_is_checked_against_the_trust_store(serve: Any, tmp_path: Path, monkeypatch: Any) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    _, untrusting = await serve(lambda n: [OK], tls=tls)
    with pytest.raises(ssl.SSLCertVerificationError):
        await untrusting.request("GET", "/models")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    _, trusting = await serve(lambda n: [OK], tls=tls)
    assert (await trusting.request("GET", "/models")).body == b'{"ok": true}'


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="Authorization"):
        HTTPClient("http://127.0.0.1:1/v1", {"Authorization": "Bearer k\r\nX-Evil: 1"}, 1.0)


def test_on_the_daemons_event_loop(tmp_path: Path) -> None:
    """The daemon runs on uvloop (``cli.run``), whose transports are its own classes."""
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[1, 2\r\n1\r\n]\r\n0\r\n\r\n"

    async def go() -> tuple[list[bytes], int, str]:
        server = await RawServer(lambda n: [OK] if n % 2 else bytewise(raw)).start()
        client = HTTPClient(server.url, {}, 2.0)
        try:
            bodies = [(await client.request("POST", "/moderations", b"{}")).body for _ in range(4)]
            return bodies, server.connections, type(asyncio.get_running_loop()).__module__
        finally:
            await client.close()
            await server.stop()

    bodies, connections, loop = run(go)
    assert loop.startswith("uvloop") and connections == 1
    assert bodies == [b'{"ok": true}', b"[1, 2]"] * 2
