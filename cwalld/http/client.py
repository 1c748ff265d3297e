"""Who the client is, for rate limits: the peer address — or, when the peer is one of
``[server].trusted_proxies``, the last address in ``X-Forwarded-For`` that no trusted proxy added
(a client can write anything in that header; only the hops our proxies append are believed)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from cwalld.http.keys import WALL

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(trusted: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(t, strict=False) for t in trusted]


def _trusted(address: str, nets: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def address(request: web.Request, nets: list[Network]) -> str:
    peer = request.remote or "unknown"
    if not nets or not _trusted(peer, nets):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, nets):
            return hop[:64]
    return peer


def https(request: web.Request, nets: list[Network]) -> bool:
    """Did the client use TLS: to us, or to one of our trusted proxies (its X-Forwarded-Proto)?"""
    if request.secure:
        return True
    if not nets or not _trusted(request.remote or "", nets):
        return False
    return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


def of(request: web.Request) -> str:
    """The client's address for rate limits (never logged, never stored)."""
    return address(request, networks(request.app[WALL].config.server.trusted_proxies))
