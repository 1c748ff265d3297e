"""The composition root: build every adapter from the config, wire them, run them in order.

Start: storage (migrations) → consumers → pending confessions queued again → scheduler →
control socket → HTTP listens. ``[server].roles`` leaves out the consumers, the scheduler or
the public HTTP API (a worker still answers /healthz, /readyz and /metrics).
Stop (SIGTERM/SIGINT): HTTP stops accepting and finishes in-flight requests → control socket and
scheduler stop → consumers finish active jobs within ``queue.shutdown_grace`` → AI client, cache
and database closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from cwalld import config as configmod
from cwalld import control, http, logs, metrics, tasks
from cwalld.ai import AI
from cwalld.cache import Cache, remote_bound
from cwalld.cache.local import LocalCache
from cwalld.config import Config, ConfigError
from cwalld.http.guard import Guard
from cwalld.http.serverlog import ServerLog
from cwalld.lag import LoopLag
from cwalld.live import LogPort
from cwalld.live.local import LocalLog
from cwalld.notify import Notifier
from cwalld.queue import JobQueue
from cwalld.queue.local import LocalQueue
from cwalld.scheduler import Scheduler
from cwalld.storage import RESTART_KEYS as STORAGE_RESTART_KEYS
from cwalld.storage import Storage, where
from cwalld.wall import Wall

log = structlog.get_logger("cwalld")

HTTP_SHUTDOWN_TIMEOUT = 10.0


def make_queue(config: Config) -> JobQueue:
    if config.redis.url:
        from cwalld.queue.redis import RedisQueue

        return RedisQueue(config.queue, config.redis.url, config.redis.prefix)
    return LocalQueue(config.queue)


def make_storage(config: Config) -> Storage:
    """PostgreSQL when ``[storage].url`` is set (several machines), else the SQLite file."""
    if config.storage.url:
        from cwalld.storage.postgres import PostgresStorage

        return PostgresStorage(config.storage.url, config.storage.pool_size, config.log.slow_query_ms)
    from cwalld.storage.sqlite import SQLiteStorage

    return SQLiteStorage(config.storage.path, config.storage.synchronous.upper(), config.log.slow_query_ms)


def make_cache(config: Config, lag: LoopLag) -> Cache:
    if not config.cache.enabled:
        return Cache(None, enabled=False)
    if config.redis.url:
        from cwalld.cache.redis import RedisCache

        return Cache(RedisCache(config.redis.url, config.redis.prefix, remote_bound(lag)), lag=lag)
    return Cache(LocalCache(config.cache.max_entries, config.cache.max_bytes))


@dataclass
class Daemon:
    """Every part of one running daemon, built from one config."""

    config: Config
    storage: Storage
    queue: JobQueue
    ai: AI
    cache: Cache
    wall: Wall
    scheduler: Scheduler
    app: web.Application
    retired: set[AI] = field(default_factory=set)  # AI clients a reload replaced, closed after their jobs

    async def close_ai(self) -> None:
        for ai in (self.ai, *self.retired):
            await ai.close()


DAEMON = web.AppKey("daemon", Daemon)


class StartFailed(Exception):
    """The daemon could not start (port taken, database or control socket unopenable): one line says why."""


def make_live_log(config: Config) -> LogPort:
    if config.redis.url:
        from cwalld.live.redis import RedisLog

        return RedisLog(config.redis.url, config.redis.prefix)
    return LocalLog()


def build(config: Config) -> web.Application:
    """The whole daemon as an aiohttp app whose startup and cleanup run the other parts."""
    storage = make_storage(config)
    queue = make_queue(config)
    ai = AI(config.ai)
    lag = LoopLag()
    cache = make_cache(config, lag)
    wall = Wall.build(config, storage, queue, ai, cache, make_live_log(config))
    scheduler = Scheduler(storage, wall.jobs.schedule(), config.scheduler.timezone, config.scheduler.claim_timeout)
    app = http.create(config, wall, scheduler)
    daemon = Daemon(config, storage, queue, ai, cache, wall, scheduler, app)
    app[DAEMON] = daemon
    roles = config.server.roles  # read at start: a reload keeps them (a restart key)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        # Each part's stop is stacked as it starts: a start that fails half way stops what ran.
        async with contextlib.AsyncExitStack() as started:
            started.push_async_callback(storage.close)
            started.push_async_callback(cache.close)
            started.push_async_callback(daemon.close_ai)  # and those a reload swapped out
            try:
                await storage.open()
            except Exception as e:  # noqa: BLE001 - a file, a server or its schema: one line says which
                raise StartFailed(f"cannot open the database {where(config)}: {e}") from None
            await wall.open()
            if "http" in roles:  # the streams' follower: only a process that serves them needs it
                wall.live.start()
            started.push_async_callback(wall.live.stop)
            queue.on_recovered = lambda: _background(wall.jobs.requeue_pending(), "requeue_failed")
            started.push_async_callback(lambda: queue.stop(daemon.config.queue.shutdown_grace))
            started.push_async_callback(wall.regenerate.stop)  # first: it calls the AI, like the jobs
            if "consumers" in roles:  # without them this process still enqueues
                await queue.start(wall.replies)
                try:
                    await wall.jobs.requeue_pending()
                except Exception as e:  # noqa: BLE001 - the recovery job queues them once the queue is back
                    log.warning("requeue_failed", error=str(e))
            if "scheduler" in roles:  # without it `jobs list` still reads the shared run records
                await scheduler.start(catch_up=not storage.created)  # a new database missed no tick
            started.push_async_callback(scheduler.stop)
            try:
                operator = await control.start(control.create(wall, scheduler), config.server.socket)
            except OSError as e:
                raise StartFailed(f"cannot open the control socket {config.server.socket}: {e}") from None
            started.push_async_callback(control.stop, operator, config.server.socket)
            watchers = [asyncio.create_task(lag.watch(), name="loop-lag"),
                        asyncio.create_task(stats_lines(daemon), name="stats")]
            yield
            await tasks.cancel(*watchers)

    app.cleanup_ctx.append(lifecycle)
    return app


_BACKGROUND: set[asyncio.Task[object]] = set()


def _background(work: Awaitable[object], failed_event: str) -> None:
    """Run ``work`` on its own; a failure is a log line, never an unretrieved exception."""
    async def run() -> object:
        try:
            return await work
        except Exception as e:  # noqa: BLE001
            log.warning(failed_event, error=str(e))
            return None

    task = asyncio.create_task(run())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def stats_lines(daemon: Daemon) -> None:
    """The seed's logMemoryUsage: one ``stats`` line every ``log.stats_interval`` seconds."""
    while True:
        await asyncio.sleep(daemon.config.log.stats_interval)
        cache = daemon.cache
        hits, misses = sum(cache.hits.values()), sum(cache.misses.values())
        try:
            queue: dict[str, int] | str = await daemon.queue.stats()
        except Exception as e:  # noqa: BLE001 - e.g. Redis down; the line still goes out
            queue = f"unavailable: {e}"
        log.info("stats", rss_mb=round(rss_bytes() / 2**20, 1), queue=queue,
                 cache_hit_ratio=round(hits / (hits + misses), 3) if hits + misses else None,
                 loop_lag_ms=round((metrics.REGISTRY.get_sample_value("cwalld_event_loop_lag_seconds") or 0) * 1000, 1))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def restart_keys(daemon: Daemon) -> list[str]:
    """Settings some part reads only at start: a reload reports a change and keeps them."""
    parts: list[tuple[str, ...]] = [http.RESTART_KEYS, control.RESTART_KEYS, STORAGE_RESTART_KEYS,
                                    daemon.queue.RESTART_KEYS, Cache.RESTART_KEYS]
    return sorted({key for part in parts for key in part})


async def reload(daemon: Daemon) -> None:
    """SIGHUP: read the config file again and hand each part the new settings, in order."""
    old = daemon.config
    try:
        new = configmod.load(None if old.source == "<defaults>" else old.source)
    except ConfigError as e:
        log.error("reload_failed", error=str(e), kept="the running config")
        return
    changed = [k for k in restart_keys(daemon) if _get(old, k) != _get(new, k)]
    if changed:
        log.warning("reload_needs_restart", keys=changed)
        kept: dict[str, dict[str, object]] = {}
        for key in changed:
            section, name = key.split(".")
            kept.setdefault(section, {})[name] = _get(old, key)
        new = configmod.replace(new, **kept)
    logs.setup(new.log.level, new.log.format)
    daemon.config = new
    daemon.wall.reconfigure(new)
    daemon.queue.reconfigure(new.queue)
    daemon.storage.reconfigure(new)
    if new.ai != old.ai:
        retired = daemon.ai
        daemon.retired.add(retired)
        daemon.ai = daemon.wall.replies.ai = AI(new.ai)

        def close_later() -> None:  # jobs in flight finish on the old client; close it once they must have
            if retired in daemon.retired:  # (else the daemon stopped and closed it)
                daemon.retired.discard(retired)
                _background(retired.close(), "ai_close_failed")
        asyncio.get_running_loop().call_later(2 * new.queue.job_timeout + 1, close_later)
    await daemon.scheduler.reschedule(daemon.wall.jobs.schedule(), new.scheduler.timezone, new.scheduler.claim_timeout)
    log.info("reloaded", config=new.source)


def _get(cfg: Config, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


async def serve(config: Config) -> None:
    notify = Notifier()
    app = build(config)
    daemon = app[DAEMON]
    # lingering_time: after an answer that did not read the whole body (a 408 for a stalled one),
    # drain the rest for at most a second — not aiohttp's ten — then close.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT, logger=ServerLog(),
                           keepalive_timeout=config.server.keepalive_timeout, lingering_time=1.0)
    try:
        await runner.setup()
    except StartFailed:
        await runner.cleanup()
        raise
    assert runner.server is not None
    try:  # not a TCPSite: connections go through the guard (head timeout, connection bound)
        listening = await asyncio.get_running_loop().create_server(
            Guard(runner.server, config.server), config.server.host, config.server.port, reuse_address=True,
            backlog=128)
    except OSError as e:
        await runner.cleanup()
        raise StartFailed(f"cannot listen on {config.server.host}:{config.server.port}: {e.strerror or e}") from None
    roles = config.server.roles
    consumers = config.queue.concurrency if "consumers" in roles else 0
    status = (f"serving on {config.server.host}:{config.server.port} as {'+'.join(roles)}, {consumers} consumers, "
              f"{'redis' if config.redis.url else 'embedded'} queue, AI {'on' if config.ai.api_key else 'off'}")
    log.info("listening", url=f"http://{config.server.host}:{config.server.port}", config=config.source, roles=roles,
             queue="redis" if config.redis.url else "embedded", consumers=consumers,
             ai="on" if config.ai.api_key else "off (fallback replies)")
    # Everything built at start lives as long as the process: keep it out of the garbage
    # collector's scans, which otherwise walk it on every full collection.
    gc.collect()
    gc.freeze()
    notify.ready(status)
    notify.start_watchdog()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloading: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        async def run() -> None:
            notify.reloading()
            await reload(daemon)
            notify.ready(status)

        task = asyncio.create_task(run())
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    log.info("stopping")
    notify.stopping()
    notify.stop_watchdog()
    listening.close()  # no new connections; runner.cleanup finishes those in flight
    await runner.cleanup()
    log.info("stopped")
    logs.flush()
