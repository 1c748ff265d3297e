"""sd_notify, spoken directly: a datagram to ``$NOTIFY_SOCKET`` per message (no libsystemd).

READY=1 once everything runs, STATUS= lines, WATCHDOG=1 from the event loop (so a blocked loop
misses its ping and systemd restarts the process), RELOADING=1 and STOPPING=1. Without
``$NOTIFY_SOCKET`` every call is a no-op. The single-file build runs cwalld as the child of the
process systemd started (it unpacks itself first): the watchdog addressed to that parent is
ours, and the unit accepts messages from the child (NotifyAccess=all).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import structlog

log = structlog.get_logger("cwalld.notify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC", "")
        ours = {str(os.getpid()), *([str(os.getppid())] if getattr(sys, "frozen", False) else [])}
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and (not watchdog_pid or watchdog_pid in ours) else None
        self._task: asyncio.Task[None] | None = None

    def send(self, *lines: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self.address)
                s.sendall("\n".join(lines).encode())
        except OSError as e:
            log.warning("notify_failed", error=str(e))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={int(time.monotonic() * 1e6)}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self) -> None:
        if self.watchdog and self.address:
            self._task = asyncio.create_task(self._ping(self.watchdog / 2), name="watchdog")

    async def _ping(self, every: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every)

    def stop_watchdog(self) -> None:
        if self._task is not None:
            self._task.cancel()
