"""The composition root: build every adapter from the config, wire them, run them in order.

Start: storage (migrations) → consumers → pending confessions queued again → scheduler →
control socket → HTTP listens.
Stop (SIGTERM/SIGINT): HTTP stops accepting and finishes in-flight requests → control socket and
scheduler stop → consumers finish active jobs within ``queue.shutdown_grace`` → AI client, cache
and database closed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from cwalld import control, http
from cwalld.ai import AI
from cwalld.cache import Cache
from cwalld.cache.local import LocalCache
from cwalld.config import Config
from cwalld.queue import JobQueue
from cwalld.queue.local import LocalQueue
from cwalld.scheduler import Job, Scheduler
from cwalld.service import Wall
from cwalld.storage.sqlite import SQLiteStorage
from cwalld.views import Views

log = structlog.get_logger("cwalld")

HTTP_SHUTDOWN_TIMEOUT = 10.0


def make_queue(config: Config) -> JobQueue:
    if config.redis.url:
        from cwalld.queue.redis import RedisQueue

        return RedisQueue(config.queue, config.redis.url, config.redis.prefix)
    return LocalQueue(config.queue)


def make_scheduler(config: Config, wall: Wall) -> Scheduler:
    """The recovery job is how the queue catches up with SQLite, the truth: it queues again
    every confession pending past the grace with no live job (a lost enqueue, a flushed Redis)."""
    s = config.scheduler
    return Scheduler(wall.storage, [
        Job("popular", config.popular.schedule, wall.popular_job),
        Job("recovery", s.recovery, wall.recovery_job),
        Job("queue_clean", s.queue_clean, wall.queue_clean_job),
        Job("sessions_purge", s.sessions_purge, wall.sessions_purge_job),
    ], s.timezone)


def make_cache(config: Config) -> Cache:
    if not config.cache.enabled:
        return Cache(None, enabled=False)
    if config.redis.url:
        from cwalld.cache.redis import RedisCache

        return Cache(RedisCache(config.redis.url, config.redis.prefix))
    return Cache(LocalCache(config.cache.max_entries))


def build(config: Config) -> web.Application:
    """The whole daemon as an aiohttp app whose startup and cleanup run the other parts."""
    storage = SQLiteStorage(config.storage.path)
    queue = make_queue(config)
    ai = AI(config.ai)
    cache = make_cache(config)
    wall = Wall(config, storage, queue, ai, cache)
    views = Views(wall, cache, config.cache)
    scheduler = make_scheduler(config, wall)
    app = http.create(config, wall, views, scheduler)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await storage.open()
        await wall.open()
        await queue.start(wall)
        try:
            await wall.requeue_pending()
        except Exception as e:  # noqa: BLE001 - the sweep will queue them once the queue is back
            log.warning("requeue_failed", error=str(e))
        await scheduler.start()
        operator = await control.start(control.create(wall, scheduler), config.server.control_socket)
        yield
        await control.stop(operator, config.server.control_socket)
        await scheduler.stop()
        await queue.stop(config.queue.shutdown_grace)
        await ai.close()
        await cache.close()
        await storage.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(config: Config) -> None:
    app = build(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    log.info("serving", host=config.server.host, port=config.server.port, config=config.source,
             queue="redis" if config.redis.url else "embedded", consumers=config.queue.concurrency,
             ai="on" if config.ai.api_key else "off (fallback replies)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()
    log.info("stopped")
