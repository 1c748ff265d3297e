"""The whole-daemon benchmark: ``.venv/bin/python -m bench [--rows N] [--duration S]``.

Starts everything itself — a private redis-server, the in-repo fake AI (zero latency), a bare
aiohttp hello-world (the framework's ceiling here), cwalld in the modes each scenario needs —
seeds a database through the storage adapter, drives each scenario with wrk (100 connections;
installed with apt-get if missing), prints one table and writes it as JSON to bench/results/.
Figures are measured, never asserted: compare ratios from one run.
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
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

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
def process(args: list[str], health: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Iterator[None]:
    proc = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(health, proc)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def daemon(db: str, port: int, ai_url: str, **env: str) -> Iterator[str]:
    base = {"CWALLD_STORAGE_PATH": db, "CWALLD_SERVER_PORT": str(port), "OPENAI_API_KEY": "bench",
            "CWALLD_AI_BASE_URL": ai_url, "CWALLD_LOG_LEVEL": "info", "CWALLD_LIMITS_DAILY_CONFESSIONS": "1000000"}
    base.pop("CWALLD_CONFIG", None)
    url = f"http://127.0.0.1:{port}"
    with process([sys.executable, "-m", "cwalld"], url + "/healthz", {**base, **env}):
        yield url


def wrk(binary: str, url: str, duration: int, connections: int, script: str | None = None) -> tuple[float, float, float]:
    args = [binary, "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx responses on {url}", file=sys.stderr)
    return rps, pct("50"), pct("99")


def table(rows: list[Row]) -> str:
    lines = [f"{'scenario':<34} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'× hello':>8}  note"]
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        lines.append(f"{r.scenario:<34} {r.rps:>9,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {ratio:>8}  {r.note}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="cwalld benchmark (figures, not assertions)")
    p.add_argument("--rows", type=int, default=100_000, help="confessions to seed (default 100k)")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=100)
    args = p.parse_args()
    binary = ensure_wrk()
    rows: list[Row] = []
    d, c = args.duration, args.connections

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stack.enter_context(private_redis())
        ai_port = free_port()
        stack.enter_context(process([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", str(ai_port)],
                                    f"http://127.0.0.1:{ai_port}/v1/models"))
        ai_url = f"http://127.0.0.1:{ai_port}/v1"
        db = str(tmp / "bench.db")
        started = time.perf_counter()
        asyncio.run(seed(db, args.rows, args.users))
        print(f"  seeded {args.rows:,} confessions, {args.users:,} users in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)

        def run(name: str, url: str, note: str = "", script: str | None = None) -> Row:
            print(f"  {name}…", file=sys.stderr)
            rps, p50, p99 = wrk(binary, url, d, c, script)
            row = Row(name, rps, p50, p99, note=note)
            rows.append(row)
            return row

        hello_port = free_port()
        with process([sys.executable, "-m", "bench.hello", str(hello_port)], f"http://127.0.0.1:{hello_port}/"):
            hello = run("hello-world (bare aiohttp)", f"http://127.0.0.1:{hello_port}/")
        with daemon(db, free_port(), ai_url) as url:
            run("feed, cached (embedded)", url + "/api/v1/confessions")
        with daemon(db, free_port(), ai_url, CWALLD_CACHE_ENABLED="false") as url:
            run("feed, uncached", url + "/api/v1/confessions")
        for row in rows:
            row.ratio = row.rps / hello.rps

    print(table(rows))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.json").write_text(json.dumps({"args": vars(args), "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"written to bench/results/{stamp}.json")


if __name__ == "__main__":
    main()
