"""The AI adapter's cost: CPU per job (moderation + chat) against the in-repo fake server.

``.venv/bin/python -m bench.ai_client [--jobs N]`` (also rows of ``make bench``) compares, on
the same fake server (its own process, so its CPU is not counted), the ``openai`` client as the
daemon used it (httpx), the ``openai`` client on its aiohttp transport, a direct aiohttp client
(session.post + orjson, as the adapter was before it got its own client) and the adapter
(``cwalld.ai.AI`` on ``cwalld.http_client``). The ``openai`` rows need ``pip install -e
'.[bench]'`` (the daemon no longer depends on it); without it they are left out. CPU is this process's
(``time.process_time``, from /proc): it does not depend on what else the machine does. Five
jobs at a time, as five consumers would run them, on uvloop as the daemon runs.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cwalld.cli import run

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 5


def measured(base: str, jobs: int) -> dict[str, float]:
    """``adapters`` on the daemon's event loop (uvloop)."""
    return run(lambda: adapters(base, jobs))


def fake_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("fake AI did not start")


async def measure(job: Callable[[int], Awaitable[Any]], jobs: int) -> float:
    """µs of CPU per job, after a warm-up."""
    for i in range(50):
        await job(i)
    left = iter(range(jobs))

    async def worker() -> None:
        for i in left:
            await job(i)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - cpu) / jobs * 1e6


async def adapters(base: str, jobs: int) -> dict[str, float]:
    """µs of CPU per job for each adapter against the fake AI at ``base``."""
    from cwalld.ai import AI
    from cwalld.config import AI as Settings

    text = "Bench itirafı {}: bugün kimseye söyleyemediğim bir şey oldu."
    results = {}

    async def with_openai(client: Any) -> float:
        async def job(i: int) -> None:
            await client.moderations.create(input=text.format(i), model="omni-moderation-latest")
            await client.chat.completions.create(model="gpt-4o-mini", max_tokens=300, temperature=0.7, messages=[
                {"role": "system", "content": "Reply."}, {"role": "user", "content": text.format(i)}])
        try:
            return await measure(job, jobs)
        finally:
            await client.close()

    try:
        import openai
    except ImportError:
        print("  (openai rows left out: pip install -e '.[bench]')", file=sys.stderr)
    else:
        results["openai client (httpx)"] = await with_openai(
            openai.AsyncOpenAI(api_key="x", base_url=base, max_retries=0, timeout=5))
        try:
            results["openai on aiohttp"] = await with_openai(openai.AsyncOpenAI(
                api_key="x", base_url=base, max_retries=0, timeout=5, http_client=openai.DefaultAioHttpClient()))
        except RuntimeError as e:  # httpx-aiohttp not installed
            print(f"  (openai aiohttp transport: {e})", file=sys.stderr)
    import aiohttp
    import orjson

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json", "User-Agent": "cwalld"}

    async def direct(i: int) -> None:
        for path, body in (("/moderations", {"input": text.format(i), "model": "omni-moderation-latest"}),
                           ("/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 300, "temperature": 0.7,
                                                  "messages": [{"role": "system", "content": "Reply."},
                                                               {"role": "user", "content": text.format(i)}]})):
            async with session.post(base + path, data=orjson.dumps(body), headers=headers) as r:
                orjson.loads(await r.read())
    try:
        results["direct aiohttp client"] = await measure(direct, jobs)
    finally:
        await session.close()
    # The same two requests per job as the rows above (MODERATION_BATCH = 1), then as the daemon
    # runs it: moderation asked in the same loop iteration by several jobs in one request.
    import cwalld.ai

    together = cwalld.ai.MODERATION_BATCH
    for name, batch in (("cwalld.ai", 1), ("cwalld.ai, batched", together)):
        cwalld.ai.MODERATION_BATCH = batch
        ai = AI(Settings(api_key="x", base_url=base, request_timeout=5))

        async def ours(i: int) -> None:
            await ai.moderate(text.format(i))
            await ai.reply(text.format(i), "tr")
        try:
            results[name] = await measure(ours, jobs)
        finally:
            cwalld.ai.MODERATION_BATCH = together
            await ai.close()
    return results


async def main(jobs: int, port: int) -> None:
    results = await adapters(f"http://127.0.0.1:{port}/v1", jobs)
    width = max(map(len, results))
    for name, us in results.items():
        print(f"{name:<{width}}  {us:8,.0f} µs CPU per job (moderation + chat)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--port", type=int, default=18710)
    a = p.parse_args()
    server = fake_server(a.port)
    try:
        run(lambda: main(a.jobs, a.port))
    finally:
        server.terminate()
