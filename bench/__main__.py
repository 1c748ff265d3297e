"""The whole-daemon benchmark: ``.venv/bin/python -m bench [--rows N] [--duration S]``.

Starts everything itself — a private redis-server, the in-repo fake AI (zero latency), a bare
aiohttp hello-world (the framework's ceiling here), cwalld in the modes each scenario needs —
seeds a database through the storage adapter, drives each scenario with wrk (one thread — the
daemon has the other core — and 100 connections; installed with apt-get if missing), runs the
daemons from a venv of cwalld and its dependencies only (build/bench-venv), prints one
table and writes it as JSON to bench/results/. Figures are measured, never asserted: compare
ratios from one run, and the CPU the daemon spent per request or confession (from /proc: it does
not depend on what else the machine is doing).

Honest rows: every create → published confession has distinct text, so every job calls the AI
(moderation + chat; the AI-outcome cache never answers); "uncached" rows run with the cache
off, which also turns single flight off, so each request runs its query.

``--storage postgres`` adds the scaling rows: the seeded wall is moved into a PostgreSQL database
of the run's own (``cwalld migrate``, timed), then 1, 2 and 3 processes sharing it and Redis
each get a wrk of their own (the connections split between them) for signed-in POST, the cached
and the uncached feed, and create → published. CPU per request is the sum over the processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import structlog

from bench.redis_server import private_redis
from bench.seed import seed

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    scenario: str
    rps: float
    p50_ms: float
    p99_ms: float
    ratio: float | None = None
    note: str = ""
    cpu_us: float | None = None  # the server's CPU per request (or per confession), from /proc
    kernel_us: float | None = None  # the part of cpu_us spent in the kernel (stime): sockets, disk


def cpu_seconds(pid: int, kernel: bool = False) -> float:
    """utime + stime of a process (stime alone with ``kernel``), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[12]) + (0 if kernel else int(fields[11]))) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """``cpu_seconds`` of every process of this machine named ``postgres`` (the server and its
    backends): the database's share of a row, which the daemons' own figure leaves out."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text() == "postgres\n":
                total += cpu_seconds(int(comm.parent.name))
        except OSError:  # gone meanwhile
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("  installing wrk (apt-get)…", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


@contextmanager
def process(args: list[str], health: str, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(health, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[bytes]

    def cpu(self, kernel: bool = False) -> float:
        return cpu_seconds(self.proc.pid, kernel)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def operator_python() -> str:
    """The Python of a venv holding cwalld as an operator installs it (``pip install -e .``, no
    extras): the daemons run there, so RSS rows do not count what only tests and this benchmark
    import (structlog loads rich and greenlet when it finds them: ~4 MB). Made once under build/,
    again when pyproject.toml changes."""
    venv, stamp = ROOT / "build" / "bench-venv", ROOT / "build" / "bench-venv" / "pyproject.toml"
    python = venv / "bin" / "python"
    project = (ROOT / "pyproject.toml").read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != project:
        print("  making build/bench-venv (cwalld with its dependencies only)…", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stamp.write_text(project)
    return str(python)


OPERATOR_PYTHON = sys.executable  # main() sets operator_python()


@contextmanager
def daemon(tmp: Path, db: str, ai_url: str, **env: str) -> Iterator[Running]:
    port = free_port()
    base = {"CWALLD_STORAGE_URL" if is_postgres(db) else "CWALLD_STORAGE_PATH": db,
            "CWALLD_SERVER_PORT": str(port), "OPENAI_API_KEY": "bench",
            "CWALLD_AI_BASE_URL": ai_url, "CWALLD_LOG_LEVEL": "info", "CWALLD_LIMITS_DAILY_CONFESSIONS": "1000000",
            "CWALLD_SERVER_CONTROL_SOCKET": str(tmp / f"control-{port}.sock")}
    url = f"http://127.0.0.1:{port}"
    env = {**base, **env}
    os.environ.pop("CWALLD_CONFIG", None)
    with process([OPERATOR_PYTHON, "-m", "cwalld"], url + "/healthz", env) as proc:
        yield Running(url, proc)


# Every confession has distinct text (a per-run tag and a counter), so every job calls the AI.
POST_SCRIPT = """
local n = %d
local i = 0
local sent = 0
local tag = 0
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) i = math.random(1, n)
  tag = math.random(1, 1000000000) end
function request()
  i = i %% n + 1
  sent = sent + 1
  local body = '{"content": "Bench itirafı ' .. tag .. '-' .. sent .. ': bugün kimseye söyleyemediğim bir şey oldu.", "category": "other"}'
  return wrk.format("POST", "/api/v1/confessions",
    {["Authorization"] = string.format("Bearer bench-token-%%06d", i), ["Content-Type"] = "application/json"}, body)
end
"""


def drain(db: str, timeout: float = 600) -> None:
    """Wait until no confession is pending, so each phase leaves the next a clean database."""
    deadline = time.monotonic() + timeout
    while count_status(db, "pending") and time.monotonic() < deadline:
        time.sleep(0.05)


def is_postgres(db: str) -> bool:
    return db.startswith("postgresql://")


def query(db: str, sql: str, *args: object) -> tuple[object, ...]:
    """The first row of ``sql`` (``?`` placeholders) on the SQLite file or the PostgreSQL database."""
    if is_postgres(db):
        import asyncpg

        async def one() -> tuple[object, ...]:
            conn = await asyncpg.connect(db)
            try:
                parts = sql.split("?")
                numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
                return tuple(await conn.fetchrow(numbered, *args))
            finally:
                await conn.close()
        return asyncio.run(one())
    import sqlite3

    with sqlite3.connect(db) as conn:
        return tuple(conn.execute(sql, args).fetchone())


def count_status(db: str, status: str) -> int:
    return int(query(db, "SELECT count(*) FROM confessions WHERE status = ?", status)[0])  # type: ignore[call-overload]


def deep_cursor(db: str, depth: int) -> str:
    """The cursor a client holds after paging ``depth`` items into the feed."""
    from cwalld.confessions import Cursors

    published_at, ident = query(db, "SELECT published_at, id FROM confessions WHERE status = 'published'"
                                    " ORDER BY published_at DESC, id DESC LIMIT 1 OFFSET ?", depth)
    (key,) = query(db, "SELECT value FROM meta WHERE key = 'cursor_key'")  # the daemon made it
    return Cursors(str(key).encode()).encode((str(published_at), int(ident)))  # type: ignore[call-overload]


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A database of this run's own on the PostgreSQL server, dropped at the end."""
    import asyncpg

    name = f"cwalld_bench_{os.getpid()}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def time_popular(db: str) -> float:
    from cwalld.domain import VIRAL_BADGE
    from cwalld.storage.sqlite import SQLiteStorage

    s = SQLiteStorage(db, slow_query_ms=0)  # the setup UPDATE is slow by nature
    await s.open()
    await s.w.execute("UPDATE confessions SET is_popular = 0")
    await s.w.execute("DELETE FROM badges")
    started = time.perf_counter()
    result = await s.mark_popular(100, VIRAL_BADGE, "9999")  # every account counts: the full join is timed
    took = time.perf_counter() - started
    await s.close()
    print(f"  popular job: {result}", file=sys.stderr)
    return took


def wrk(binary: str, url: str, duration: int, connections: int,
        script: str | None = None) -> tuple[float, float, float, int, int]:
    """rps, p50 and p99 in ms, requests, and how many of them were not answered 2xx or 3xx."""
    args = [binary, "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, pct("50"), pct("99"), requests, int(errors.group(1)) if errors else 0


def table(rows: list[Row]) -> str:
    lines = [f"{'scenario':<36} {'rps/value':>9} {'CPU µs':>8} {'p50 ms':>8} {'p99 ms':>8} {'× hello':>8}  note"]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        value = f"{r.rps:>9,.0f}" if r.rps >= 100 else f"{r.rps:>9.2f}" if r.rps >= 1 else f"{r.rps:>9.4f}"
        cpu = f"{r.cpu_us:>8,.0f}" if r.cpu_us is not None else f"{'':>8}"
        latency = f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f}" if r.p50_ms else f"{'':>8} {'':>8}"
        kernel = f"kernel {r.kernel_us:,.0f} µs of it" if r.kernel_us is not None else ""
        lines.append(f"{r.scenario:<36} {value} {cpu} {latency} {ratio:>8}  {'; '.join(filter(None, [kernel, r.note]))}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="cwalld benchmark (figures, not assertions)")
    p.add_argument("--rows", type=int, default=100_000, help="confessions to seed (default 100k)")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--queue-jobs", type=int, default=20_000, help="jobs for the Redis queue scenario")
    p.add_argument("--ai-jobs", type=int, default=2_000, help="jobs for the AI adapter rows")
    p.add_argument("--storage", choices=["sqlite", "postgres"], default="sqlite",
                   help="postgres: add the rows of 1, 2 and 3 processes on PostgreSQL + Redis")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server's URL the run may create and drop a database with")
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # quiet in-process queue
    binary = ensure_wrk()
    global OPERATOR_PYTHON
    OPERATOR_PYTHON = operator_python()
    rows: list[Row] = []
    d, c = args.duration, args.connections

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis_url = stack.enter_context(private_redis())
        ai_port = free_port()
        fake_ai = stack.enter_context(process([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", str(ai_port)],
                                              f"http://127.0.0.1:{ai_port}/v1/models"))
        ai_url = f"http://127.0.0.1:{ai_port}/v1"
        db = str(tmp / "bench.db")
        started = time.perf_counter()
        users = min(args.users, max(args.rows, 1))
        asyncio.run(seed(db, args.rows, users, tokens=users))
        print(f"  seeded {args.rows:,} confessions, {users:,} users in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        script = tmp / "post.lua"
        script.write_text(POST_SCRIPT % users)

        def run(name: str, url: str | list[str], pid: int | list[int], note: str = "", lua: Path | None = None,
                pg: bool = False) -> Row:
            """wrk against ``url``; against several processes, a wrk each at once, the connections
            split between them: rps and requests summed, CPU summed over the processes (and, with
            ``pg``, PostgreSQL's CPU per request in the note)."""
            urls, pids = (url if isinstance(url, list) else [url]), (pid if isinstance(pid, list) else [pid])
            print(f"  {name}…", file=sys.stderr)
            cpu, pg_cpu = sum(cpu_seconds(p) for p in pids), postgres_cpu() if pg else 0.0
            kernel = sum(cpu_seconds(p, kernel=True) for p in pids)
            with ThreadPoolExecutor(len(urls)) as pool:
                runs = list(pool.map(lambda u: wrk(binary, u, d, max(c // len(urls), 1), str(lua) if lua else None), urls))
            rps, requests, failed = sum(r[0] for r in runs), sum(r[3] for r in runs), sum(r[4] for r in runs)
            p50, p99 = max(r[1] for r in runs), max(r[2] for r in runs)
            if failed:  # a row of refusals measures the refusal: say so in the table itself
                note = f"{note}; {failed:,} of {requests:,} answers not 2xx" if note else f"{failed:,} of {requests:,} answers not 2xx"
            cpu_us = (sum(cpu_seconds(p) for p in pids) - cpu) / max(requests, 1) * 1e6
            if pg:
                server = f"PostgreSQL {(postgres_cpu() - pg_cpu) / max(requests, 1) * 1e6:,.0f} µs/request"
                note = f"{note}; {server}" if note else server
            kernel_us = (sum(cpu_seconds(p, kernel=True) for p in pids) - kernel) / max(requests, 1) * 1e6
            row = Row(name, rps, p50, p99, note=note, cpu_us=cpu_us, kernel_us=kernel_us)
            rows.append(row)
            return row

        def figure(name: str, value: float, note: str, cpu_us: float | None = None, kernel_us: float | None = None) -> None:
            rows.append(Row(name, value, 0.0, 0.0, note=note, cpu_us=cpu_us, kernel_us=kernel_us))

        def create_published(procs: Running | list[Running], mode: str, db: str = db) -> None:
            """POST distinct confessions for the wrk run, then let the backlog drain: confessions
            published per second end to end, during the flood and after it, and the daemons' CPU
            per confession (POST + job with moderation and chat)."""
            group = procs if isinstance(procs, list) else [procs]
            drain(db)
            pg = is_postgres(db)
            before, cpu, t0 = count_status(db, "published"), sum(r.cpu() for r in group), time.perf_counter()
            kernel = sum(r.cpu(kernel=True) for r in group)
            ai_cpu = cpu_seconds(fake_ai.pid)  # the stand-in AI shares this machine; a real one answers from elsewhere
            pg_cpu = postgres_cpu() if pg else 0.0
            run(f"signed-in POST, {mode}", [r.url + "/" for r in group], [r.proc.pid for r in group],
                "distinct users, distinct text", lua=script, pg=pg)
            flood_end, during = time.perf_counter(), count_status(db, "published") - before
            backlog = count_status(db, "pending")
            drain(db)
            took, done = time.perf_counter() - t0, count_status(db, "published") - before
            drained = time.perf_counter() - flood_end
            server = f"; PostgreSQL {(postgres_cpu() - pg_cpu) / max(done, 1) * 1e6:,.0f} µs each" if pg else ""
            ai = f"; fake AI {(cpu_seconds(fake_ai.pid) - ai_cpu) / max(done, 1) * 1e6:,.0f} µs each"
            figure(f"create → published, {mode}", done / took,
                   f"{done:,} in {took:.1f} s; {during / d:,.0f}/s published during the POST flood{server}{ai}",
                   cpu_us=(sum(r.cpu() for r in group) - cpu) / max(done, 1) * 1e6,
                   kernel_us=(sum(r.cpu(kernel=True) for r in group) - kernel) / max(done, 1) * 1e6)
            figure(f"backlog drain, {mode}", backlog / drained if backlog else 0.0,
                   f"{backlog:,} pending when the flood ended, gone in {drained:.1f} s")

        hello_port = free_port()
        with process([sys.executable, "-m", "bench.hello", str(hello_port)], f"http://127.0.0.1:{hello_port}/") as h:
            hello = run("hello-world (bare aiohttp)", f"http://127.0.0.1:{hello_port}/", h.pid)

        with daemon(tmp, db, ai_url) as e:
            time.sleep(1.0)
            idle_rss = e.rss_mb()
            run("feed, cached (embedded)", e.url + "/api/v1/confessions", e.proc.pid)
            create_published(e, "embedded")
            busy_rss = e.rss_mb()

        with daemon(tmp, db, ai_url, CWALLD_CACHE_ENABLED="false") as u:
            first = run("feed, uncached, first page", u.url + "/api/v1/confessions", u.proc.pid, "cache and single flight off")
            depth = int(args.rows * 0.9)
            deep = run(f"feed, uncached, cursor at {depth:,}", u.url + f"/api/v1/confessions?cursor={deep_cursor(db, depth)}",
                       u.proc.pid)
            deep.note = f"p50 ratio to first page {deep.p50_ms / first.p50_ms:.2f}"

        with daemon(tmp, db, ai_url, CWALLD_REDIS_URL=redis_url) as r:
            time.sleep(1.0)
            idle_rss_redis = r.rss_mb()
            run("feed, cached (redis)", r.url + "/api/v1/confessions", r.proc.pid)
            create_published(r, "redis")
            busy_rss_redis = r.rss_mb()

        from bench.queue import bare, ours

        bare_rate = asyncio.run(bare(redis_url, args.queue_jobs))
        our_rate = asyncio.run(ours(redis_url, args.queue_jobs))
        figure("redis queue jobs/s", our_rate, f"{our_rate / bare_rate:.2f} of a bare redis-py loop ({bare_rate:,.0f}/s)")
        seconds = asyncio.run(time_popular(db))
        figure("popular job, seconds", seconds, f"over {args.rows:,} confessions")
        figure("RSS MB, idle after start", idle_rss, "embedded daemon, with an AI key")
        figure("RSS MB, after its scenarios", busy_rss, "embedded daemon")
        figure("RSS MB, idle after start (redis)", idle_rss_redis, "redis mode, with an AI key")
        figure("RSS MB, after its scenarios (redis)", busy_rss_redis, "redis mode")
        from bench.ai_client import measured

        for name, us in measured(ai_url, args.ai_jobs).items():
            figure(f"AI job: {name}", us, "µs of CPU per job (moderation + chat), client side", cpu_us=us)
        if args.storage == "postgres":
            pg = stack.enter_context(postgres_database(args.postgres))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cwalld", "migrate", "--from", f"sqlite:{db}", "--to", pg],
                           check=True, stdout=subprocess.DEVNULL)
            figure("cwalld migrate, seconds", time.perf_counter() - started,
                   f"the seeded wall ({args.rows:,} confessions, {users:,} users) into PostgreSQL, counts verified")
            for n in (1, 2, 3):
                with ExitStack() as group:
                    procs = [group.enter_context(daemon(tmp, pg, ai_url, CWALLD_REDIS_URL=redis_url)) for _ in range(n)]
                    time.sleep(1.0)
                    if n == 1:
                        figure("RSS MB, idle after start (postgres)", procs[0].rss_mb(), "postgres + redis, with an AI key")
                    mode = f"postgres ×{n}"  # n processes
                    run(f"feed, cached ({mode})", [p.url + "/api/v1/confessions" for p in procs],
                        [p.proc.pid for p in procs], pg=True)
                    create_published(procs, mode, db=pg)
                with ExitStack() as group:
                    procs = [group.enter_context(daemon(tmp, pg, ai_url, CWALLD_REDIS_URL=redis_url,
                                                        CWALLD_CACHE_ENABLED="false")) for _ in range(n)]
                    run(f"feed, uncached ({mode})", [p.url + "/api/v1/confessions" for p in procs],
                        [p.proc.pid for p in procs], "cache and single flight off", pg=True)
        for row in rows:
            if row.p50_ms:
                row.ratio = row.rps / hello.rps

    print(table(rows))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.json").write_text(json.dumps({"args": vars(args), "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"written to bench/results/{stamp}.json")


if __name__ == "__main__":
    main()
