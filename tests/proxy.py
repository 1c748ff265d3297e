"""A TCP proxy that can go silent: the network fault a crashed host or a partition looks like.

``silence()`` turns every open connection into a black hole — bytes are swallowed, nothing is
closed, no FIN, no RST — as when the host behind it crashed or a failover moved its address.
``heal()`` lets new connections through again; the swallowed ones stay dead, as real ones do.
"""

from __future__ import annotations

import asyncio
import contextlib


class SilentProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target_port = host, target_port
        self.port = 0  # after start: the same port again after a stop (a host that comes back)
        self._server: asyncio.Server | None = None
        self._dead: set[asyncio.StreamWriter] = set()
        self._epoch = 0  # connections opened in an older epoch than the last silence are dead
        self.silent = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def silence(self) -> None:
        self.silent = True
        self._epoch += 1

    def heal(self) -> None:
        self.silent = False

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._dead:
            w.close()
        self._dead.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._tasks.add(me)  # type: ignore[arg-type]
        try:
            await self._connect(reader, writer)
        except (asyncio.CancelledError, OSError):
            pass  # stopped, or the upstream is gone: this connection just ends
        finally:
            self._tasks.discard(me)  # type: ignore[arg-type]

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._dead.add(writer)
        if self.silent:  # a new connection into the void: accepted by nobody who answers
            await self._swallow(reader)
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        self._dead.add(up_writer)
        epoch = self._epoch
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst, epoch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, epoch: int) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                if self._epoch != epoch:  # silenced since this connection opened: swallow forever
                    await self._swallow(src)
                    return
                dst.write(data)
                await dst.drain()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
            await asyncio.sleep(3600)
