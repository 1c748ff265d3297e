"""The HTTP entrypoint (aiohttp): thin handlers over the service."""

from cwalld.http.app import create

__all__ = ["create"]
