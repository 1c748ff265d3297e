"""The chaos suite: ``make chaos`` (``python -m bench.chaos [--short] [--only NAME…]``).

Each scenario runs real cwalld processes under a load of distinct confessions, breaks something
the way production breaks — kill -9, a Redis killed and restarted empty, FLUSHALL, a Redis that
goes silent, SIGSTOP past the lease, a storm of reloads, SIGTERM with a backlog, a full disk —
and then counts, from the database and the daemons' own log lines:

- accepted: POSTs answered 202 (a refused connection while a process is dead is not accepted);
- published: of those, published or rejected by the end;
- lost: accepted but missing from the database, or still pending when recovery timed out;
- duplicated: confessions published more than once (two ``confession_published`` lines);
- 5xx: answers ≥ 500 (a full disk must be a 503 with Retry-After, counted apart);
- recover s: from the end of the fault until every accepted confession was published.

Prints a table and writes it as JSON to bench/results/. ``--short`` is what the test suite runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.proxy import SilentProxy  # noqa: E402 - the same black-hole proxy the tests use


@dataclass
class Row:
    fault: str
    accepted: int = 0
    published: int = 0
    lost: int = 0
    duplicated: int = 0
    errors_5xx: int = 0
    unavailable_503: int = 0
    recover_s: float | None = None
    note: str = ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await wait_port(self.port, self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True).stdout


class Daemon:
    def __init__(self, workdir: Path, db: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"daemon-{self.port}.log"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("CWALLD_")},
                    "CWALLD_SERVER_PORT": str(self.port), "CWALLD_STORAGE_PATH": str(db),
                    "CWALLD_SERVER_CONTROL_SOCKET": str(workdir / f"control-{self.port}.sock"),
                    "CWALLD_LOG_LEVEL": "info", "CWALLD_LIMITS_DAILY_CONFESSIONS": "1000000",
                    "CWALLD_QUEUE_JOB_TIMEOUT": "2", "CWALLD_QUEUE_SHUTDOWN_GRACE": "5", **env}
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cwalld"], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        await wait_port(self.port, self.proc)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait(self, timeout: float = 60) -> float:
        """Seconds until the process exited."""
        assert self.proc is not None
        started = time.monotonic()
        while self.proc.poll() is None:
            if time.monotonic() - started > timeout:
                self.proc.kill()
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    def published_lines(self) -> Counter[int]:
        seen: Counter[int] = Counter()
        if self.log.exists():
            for line in self.log.read_text(errors="replace").splitlines():
                if '"confession_published"' in line:
                    seen[json.loads(line)["confession_id"]] += 1
        return seen


@dataclass
class Load:
    """Posting clients: distinct text per confession, spread over the daemons that are up."""

    urls: list[str]
    tokens: list[str] = field(default_factory=list)
    accepted: set[int] = field(default_factory=set)
    codes: Counter[int] = field(default_factory=Counter)
    refused: int = 0
    _n: int = 0

    async def users(self, session: aiohttp.ClientSession, n: int = 4) -> None:
        for i in range(n):
            async with session.post(self.urls[0] + "/api/v1/auth/register",
                                    json={"username": f"kaos_{os.getpid()}_{time.monotonic_ns()}_{i}",
                                          "password": "password123"}) as r:
                self.tokens.append((await r.json())["token"])

    async def run(self, session: aiohttp.ClientSession, seconds: float, clients: int = 4, pause: float = 0.1) -> None:
        """``clients`` posting in a loop, each pausing ``pause`` s between posts (≈ 40/s in all by
        default: a load the five consumers can publish while it lasts, at the fake AI's latency)."""
        until = time.monotonic() + seconds

        async def client(k: int) -> None:
            while time.monotonic() < until:
                self._n += 1
                n = self._n
                url = self.urls[n % len(self.urls)]
                try:
                    async with session.post(url + "/api/v1/confessions", headers={
                            "Authorization": f"Bearer {self.tokens[n % len(self.tokens)]}"},
                            json={"content": f"Kaos testi itirafı {n}: {os.urandom(6).hex()}", "category": "other"},
                            timeout=aiohttp.ClientTimeout(total=10)) as r:
                        self.codes[r.status] += 1
                        if r.status == 202:
                            self.accepted.add((await r.json())["confession"]["id"])
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    self.refused += 1
                await asyncio.sleep(pause)

        await asyncio.gather(*(client(k) for k in range(clients)))


def statuses(db: Path, ids: set[int]) -> dict[int, str]:
    with sqlite3.connect(db, timeout=30) as c:
        return dict(c.execute("SELECT id, status FROM confessions"))


async def settle(db: Path, load: Load, timeout: float) -> float | None:
    """Seconds until every accepted confession left pending; None if some never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = await asyncio.to_thread(statuses, db, load.accepted)
        if all(found.get(i) in ("published", "rejected") for i in load.accepted):
            return round(time.monotonic() - started, 2)
        await asyncio.sleep(0.2)
    return None


async def fake_ai(latency: float) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", str(port),
                             "--latency", str(latency)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await wait_port(port, proc)
    return f"http://127.0.0.1:{port}/v1", proc


class Stage:
    """One scenario's world: a temp dir, a database path, the fake AI, Redis when asked, daemons."""

    def __init__(self, short: bool) -> None:
        self.short = short
        self.tmp = Path(tempfile.mkdtemp(prefix="cwalld-chaos-"))
        self.db = self.tmp / "cwall.db"
        self.daemons: list[Daemon] = []
        self.redis: Redis | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ai_url = ""

    def secs(self, full: float, short: float) -> float:
        return short if self.short else full

    async def open(self, latency: float = 0.02, redis: bool = False) -> None:
        self.ai_url, proc = await fake_ai(latency)
        self.procs.append(proc)
        if redis:
            self.redis = Redis(self.tmp)
            await self.redis.start()

    def daemon(self, redis_url: str | None = None, **env: str) -> Daemon:
        base = {"OPENAI_API_KEY": "chaos", "CWALLD_AI_BASE_URL": self.ai_url}
        if redis_url or self.redis:
            base["CWALLD_REDIS_URL"] = redis_url or (self.redis.url if self.redis else "")
        d = Daemon(self.tmp, self.db, {**base, **env})
        self.daemons.append(d)
        return d

    async def under_load(self, s: aiohttp.ClientSession, seconds: float,
                         *daemons: Daemon) -> tuple[Load, asyncio.Future[None]]:
        """Start ``daemons`` and a load over them for ``seconds``, running while the fault happens."""
        for d in daemons:
            await d.start()
        load = Load([d.url for d in daemons])
        await load.users(s)
        return load, asyncio.ensure_future(load.run(s, seconds))

    def duplicated(self) -> int:
        total: Counter[int] = Counter()
        for d in self.daemons:
            total.update(d.published_lines())
        return sum(1 for n in total.values() if n > 1)

    async def close(self) -> None:
        for d in self.daemons:
            d.signal(signal.SIGKILL)
            if d.proc is not None:
                await d.wait(5)
        if self.redis is not None:
            self.redis.kill()
        for p in self.procs:
            p.kill()
            p.wait()

    async def verdict(self, name: str, load: Load, recover: float | None, note: str = "") -> Row:
        found = await asyncio.to_thread(statuses, self.db, load.accepted)
        done = [i for i in load.accepted if found.get(i) in ("published", "rejected")]
        return Row(name, accepted=len(load.accepted), published=len(done),
                   lost=len(load.accepted) - len(done), duplicated=self.duplicated(),
                   errors_5xx=sum(n for code, n in load.codes.items() if code >= 500 and code != 503),
                   unavailable_503=load.codes[503], recover_s=recover, note=note)


Scenario = Callable[[Stage, aiohttp.ClientSession], Awaitable[Row]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
async def kill9_mid_jobs(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.05)
    d = st.daemon()
    load, posting = await st.under_load(s, st.secs(6, 2), d)
    await asyncio.sleep(st.secs(3, 1))
    d.signal(signal.SIGKILL)  # jobs in flight, a backlog waiting
    await d.wait()
    await d.start()  # the same database: pending ones are queued again at start
    await posting
    return await st.verdict("kill -9 mid-jobs (embedded)", load, await settle(st.db, load, 60))


@scenario
async def kill9_one_of_two(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.05, redis=True)
    a, b = st.daemon(), st.daemon()
    load, posting = await st.under_load(s, st.secs(6, 2), a, b)
    await asyncio.sleep(st.secs(3, 1))
    a.signal(signal.SIGKILL)  # B takes over its leased jobs when the leases run out
    await a.wait()
    load.urls = [b.url]
    await posting
    return await st.verdict("two processes, kill -9 one (redis)", load, await settle(st.db, load, 60))


@scenario
async def redis_restarted_empty(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.05, redis=True)
    d = st.daemon()
    load, posting = await st.under_load(s, st.secs(6, 2.5), d)
    await asyncio.sleep(st.secs(2, 0.8))
    assert st.redis is not None
    st.redis.kill()
    await asyncio.sleep(st.secs(2, 0.8))
    await st.redis.start()  # empty: every job it held is gone; the database still says pending
    await posting
    return await st.verdict("Redis killed, restarted empty", load, await settle(st.db, load, 60))


@scenario
async def flushall_twice(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.05, redis=True)
    d = st.daemon()
    load, posting = await st.under_load(s, st.secs(6, 2.5), d)
    assert st.redis is not None
    for _ in range(2):
        await asyncio.sleep(st.secs(2, 0.8))
        st.redis.cli("FLUSHALL")
    await posting
    return await st.verdict("FLUSHALL ×2", load, await settle(st.db, load, 120))


@scenario
async def redis_silent(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.05, redis=True)
    assert st.redis is not None
    proxy = SilentProxy(st.redis.port)
    await proxy.start()
    d = st.daemon(redis_url=proxy.url)
    load, posting = await st.under_load(s, st.secs(20, 5), d)
    await asyncio.sleep(st.secs(2, 0.5))
    proxy.silence()
    await asyncio.sleep(st.secs(15, 4))
    proxy.heal()
    await posting
    row = await st.verdict(f"Redis silent {st.secs(15, 4):g} s (no FIN/RST)", load, await settle(st.db, load, 90))
    await proxy.stop()
    return row


@scenario
async def sigstop_past_lease(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.2, redis=True)
    a, b = st.daemon(), st.daemon()  # job_timeout 2 s: a lease is 2 × 2 + 1 = 5 s
    await a.start()
    await b.start()
    load = Load([a.url, b.url])
    await load.users(s)
    await load.run(s, st.secs(2, 1))
    load.urls = [b.url]
    a.signal(signal.SIGSTOP)  # jobs in flight in A; their leases run out and B takes them over
    await load.run(s, st.secs(8, 7))
    a.signal(signal.SIGCONT)  # A wakes with stale runs: they must change nothing
    recover = await settle(st.db, load, 60)
    await asyncio.sleep(1)  # A's late acknowledgements land
    lost_lease = a.log.read_text(errors="replace").count('"job_lease_lost"')
    return await st.verdict("SIGSTOP past the lease, SIGCONT", load, recover, note=f"job_lease_lost in A: {lost_lease}")


@scenario
async def sighup_storm(st: Stage, s: aiohttp.ClientSession) -> Row:
    await st.open(latency=0.05)
    cfg = st.tmp / "cwalld.toml"
    cfg.write_text('[log]\nlevel = "info"\n[popular]\nthreshold = 1\n')
    d = st.daemon(CWALLD_CONFIG=str(cfg))
    await d.start()
    load = Load([d.url])
    await load.users(s)
    posting = asyncio.ensure_future(load.run(s, st.secs(6, 3)))
    hups = 0
    popular = asyncio.ensure_future(asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "cwalld", "jobs", "run", "popular"], env=d.env, cwd=ROOT, capture_output=True))
    while not posting.done():
        d.signal(signal.SIGHUP)
        hups += 1
        await asyncio.sleep(0.2)
    ran = await popular
    row = await st.verdict("SIGHUP every 200 ms + popular job", load, await settle(st.db, load, 60),
                           note=f"{hups} reloads; popular job exit {ran.returncode}")
    if ran.returncode != 0:
        row.note += f" ({ran.stderr.strip()[:80]})"
    return row


async def _sigterm_backlog(st: Stage, s: aiohttp.ClientSession, redis: bool) -> Row:
    await st.open(latency=0.3, redis=redis)
    d = st.daemon()
    await d.start()
    load = Load([d.url])
    await load.users(s)
    await load.run(s, st.secs(2, 1))  # a backlog: 5 consumers at 0.6 s a job cannot keep up
    d.signal(signal.SIGTERM)
    exited = await d.wait()
    active_after = ""
    if redis and st.redis is not None:
        active_after = st.redis.cli("LLEN", "cwall:q:active").strip()
    d2 = st.daemon(**({"CWALLD_REDIS_URL": st.redis.url} if st.redis else {}))
    await d2.start()
    note = f"exited in {exited:.1f} s" + (f"; active after exit: {active_after}" if redis else "")
    return await st.verdict(f"SIGTERM with a backlog ({'redis' if redis else 'embedded'})", load,
                            await settle(st.db, load, 90), note=note)


@scenario
async def sigterm_backlog_embedded(st: Stage, s: aiohttp.ClientSession) -> Row:
    return await _sigterm_backlog(st, s, redis=False)


@scenario
async def sigterm_backlog_redis(st: Stage, s: aiohttp.ClientSession) -> Row:
    return await _sigterm_backlog(st, s, redis=True)


@scenario
async def disk_full(st: Stage, s: aiohttp.ClientSession) -> Row:
    disk = st.tmp / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        return Row("disk full, then space back", note=f"skipped: cannot mount a tmpfs here ({mounted.stderr.strip()[:60]})")
    try:
        st.db = disk / "cwall.db"
        await st.open(latency=0.0)
        d = st.daemon()
        await d.start()
        load = Load([d.url])
        await load.users(s)
        await load.run(s, st.secs(6, 3), pause=0.0)  # 2 MB fill up: posts answer 503 from some point
        async with s.get(d.url + "/readyz") as r:
            ready = (r.status, (await r.json()).get("db"))
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        before = len(load.accepted)
        await load.run(s, st.secs(2, 1))  # space is back: accepted again, by itself
        recover = await settle(st.db, load, 60)
        row = await st.verdict("disk full, then space back", load, recover,
                               note=f"/readyz while full: {ready[0]} db={ready[1]}; accepted after: {len(load.accepted) - before}")
        await st.close()
        return row
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


async def run(names: list[str], short: bool) -> list[Row]:
    rows = []
    async with aiohttp.ClientSession() as session:
        for name in names:
            stage = Stage(short)
            started = time.monotonic()
            try:
                row = await SCENARIOS[name](stage, session)
            except Exception as e:  # noqa: BLE001 - a scenario that breaks is a row that says so
                row = Row(name, lost=-1, note=f"scenario failed: {type(e).__name__}: {e}"[:200])
            finally:
                await stage.close()
            row.note = (row.note + f" [{time.monotonic() - started:.0f} s]").strip()
            print(f"  {row.fault}: lost {row.lost}, duplicated {row.duplicated}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    head = ("fault", "accepted", "published", "lost", "duplicated", "5xx", "503", "recover s", "note")
    lines = [head] + [(r.fault, str(r.accepted), str(r.published), str(r.lost), str(r.duplicated), str(r.errors_5xx),
                       str(r.unavailable_503), "-" if r.recover_s is None else f"{r.recover_s:g}", r.note) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def main() -> None:
    p = argparse.ArgumentParser(description="cwalld chaos suite")
    p.add_argument("--short", action="store_true", help="short faults and loads (what the tests run)")
    p.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    p.add_argument("--json", help="write the rows here (default: bench/results/chaos-<time>.json)")
    args = p.parse_args()
    rows = asyncio.run(run(args.only or list(SCENARIOS), args.short))
    print(table(rows))
    out = Path(args.json) if args.json else ROOT / "bench" / "results" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False))
    bad = [r for r in rows if r.lost or r.duplicated or r.errors_5xx]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
