"""The HTTP entrypoint (aiohttp): thin handlers over the use cases."""

from cwalld.http.app import RESTART_KEYS, create

__all__ = ["RESTART_KEYS", "create"]
