"""A small HTTP/1.1 client for the AI's JSON calls: kept-alive connections, nothing more.

Why not aiohttp's client: a job's two AI requests were the largest part of its CPU, and most of
it was the general client (URL objects, multidicts, tracing, cookies, a stream reader per
response). Measured on the in-repo fake server, uvloop, five jobs at a time (``python -m
bench.ai_client``): ~290 µs per job through aiohttp's client against ~125 µs with a protocol
like this one. We send a few fixed headers and JSON, and read a status, one header
(Retry-After) and a JSON body.

What it keeps of a good client: http and https (the system's trust store, ``SSL_CERT_FILE``),
any base path, responses framed by Content-Length, chunked or the connection's end, gzip or
deflate bodies, keep-alive with idle connections dropped after ``keepalive`` seconds and a
connection the server closes left out; every request bounded by ``timeout`` (connect, send and
answer together); a response larger than ``max_body`` refused. Errors are ``TimeoutError``
and ``ConnectionError`` (``HTTPProtocolError`` for a malformed answer) or another ``OSError``
(refused, DNS, TLS). Nothing is retried: that is the job queue's.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # status line and headers of one response
IDLE_KEPT = 32  # idle connections kept for the next requests; more are closed
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() also says yes to "²", which int() refuses
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class HTTPProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 we can read."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection; one request at a time, its response parsed as it arrives."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head: tuple[int, dict[str, str], bool] | None = None  # status, headers, keep-alive
        self._body = bytearray()  # a chunked body so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head, self._body = None, bytearray()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def expire(self) -> None:
        """The request's time is up: its caller hears ``TimeoutError``."""
        self._fail(TimeoutError())

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # an answer nobody asked for (or waits for any more): never reuse
            return
        self._buffer += data
        try:
            self._parse(eof=False)
        except HTTPProtocolError as e:
            self._fail(e)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        try:
            self._parse(eof=True)
        except HTTPProtocolError as e:
            self._fail(e)
            return
        if not self._waiter.done():
            reason = f": {exc}" if exc else ""
            self._fail(ConnectionError(f"the server closed the connection before its answer was complete{reason}"))

    def _fail(self, error: Exception) -> None:
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def _parse(self, eof: bool) -> None:
        buf = self._buffer
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise HTTPProtocolError("response headers too large")
                return
            self._head = _head(bytes(buf[:end]))
            del buf[:end + 4]
            if 100 <= self._head[0] < 200:  # informational: the real answer follows
                self._head = None
        status, headers, keep_alive = self._head
        if "chunked" in headers.get("transfer-encoding", "").lower():
            if not self._chunks():
                return
            body = bytes(self._body)
        elif status in (204, 304):
            body = b""
        elif (length := headers.get("content-length")) is not None:
            if not _DIGITS.fullmatch(length) or int(length) > self.max_body:
                raise HTTPProtocolError(f"unusable Content-Length: {length[:40]!r}")
            n = int(length)
            if len(buf) < n:
                return
            body = bytes(buf[:n])
            del buf[:n]
        else:  # framed by the connection's end
            if len(buf) > self.max_body:
                raise HTTPProtocolError(f"response larger than {self.max_body} bytes")
            if not eof:
                return
            body, keep_alive = bytes(buf), False
            buf.clear()
        body = _decoded(body, headers.get("content-encoding", "identity"), self.max_body)
        if buf:  # bytes after the answer: the connection is out of step
            keep_alive = False
        self.idle_since = time.monotonic()
        if not keep_alive:
            self.close()
        assert self._waiter is not None
        self._waiter.set_result(Response(status, headers, body))

    def _chunks(self) -> bool:
        """Move whole chunks from the buffer to the body; True when the last one (and the
        trailers) arrived."""
        buf = self._buffer
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                if len(buf) > MAX_HEAD:
                    raise HTTPProtocolError("chunk size line too long")
                return False
            size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):  # int(, 16) would take "-5" (a loop that never ends) or "0x5"
                raise HTTPProtocolError(f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                trailers_end = buf.find(b"\r\n\r\n", line_end) if buf[line_end:line_end + 4] != b"\r\n\r\n" else line_end
                if trailers_end < 0:
                    return False
                del buf[:trailers_end + 4]
                return True
            if len(self._body) + size > self.max_body:
                raise HTTPProtocolError(f"response larger than {self.max_body} bytes")
            if len(buf) < line_end + 2 + size + 2:
                return False
            start = line_end + 2
            self._body += buf[start:start + size]
            del buf[:start + size + 2]


def _head(raw: bytes) -> tuple[int, dict[str, str], bool]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not _DIGITS.fullmatch(code):
        raise HTTPProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HTTPProtocolError(f"malformed header line: {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return int(code), headers, keep_alive


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise HTTPProtocolError(f"unsupported Content-Encoding: {encoding[:40]!r}")
    d = zlib.decompressobj(47)  # gzip or zlib header, detected
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise HTTPProtocolError(f"bad {encoding} body: {e}") from None
    if len(out) > limit:
        raise HTTPProtocolError(f"response larger than {limit} bytes")
    return out


class HTTPClient:
    """Requests to one server under ``base_url``, each bounded by ``timeout`` seconds."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float, keepalive: float = 15.0,
                 max_body: int = 4 * 1024 * 1024) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host, self.tls = url.hostname, url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.base_path = url.path.rstrip("/")
        self.timeout, self.keepalive, self.max_body = timeout, keepalive, max_body
        authority = url.netloc.rpartition("@")[2]
        fixed = {"Host": authority, "Accept": "application/json", "Accept-Encoding": "identity", **headers}
        for name, value in fixed.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ValueError(f"header {name} holds a line break")
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._ssl = ssl.create_default_context() if self.tls else None
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout  # one bound over connect, send and answer
        conn = self._idle_connection()
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect()
        self._busy.add(conn)
        try:
            length = b"Content-Length: %d\r\n" % len(body) if body is not None else b""
            head = f"{method} {self.base_path}{path} HTTP/1.1\r\n".encode("latin-1")
            answer = conn.request(head + self._fixed + length + b"\r\n" + (body or b""))
            # A timer on the answer, not asyncio.timeout around the await: the same bound at a
            # sixth of the CPU (~0.65 µs against ~3.9 µs per request, uvloop, process_time).
            timer = loop.call_at(deadline, conn.expire)
            try:
                response = await answer
            finally:
                timer.cancel()
        except BaseException:
            conn.close()  # an answer may still come: this connection is out of step
            raise
        finally:
            self._busy.discard(conn)
        if not conn.closed and len(self._idle) < IDLE_KEPT:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    def _idle_connection(self) -> _Connection | None:
        too_old = time.monotonic() - self.keepalive
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.idle_since > too_old:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(self.max_body), self.host, self.port,
                                               ssl=self._ssl, server_hostname=self.host if self.tls else None)
        return conn

    async def close(self) -> None:
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
