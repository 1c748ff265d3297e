"""The bench command keeps working: a tiny run prints its table (figures are never asserted)."""

import re
import subprocess
import sys

from tests.conftest import POSTGRES, ROOT


def test_bench_smoke_prints_the_table() -> None:
    r = subprocess.run([sys.executable, "-m", "bench", "--rows", "300", "--users", "50", "--duration", "1",
                        "--connections", "20", "--queue-jobs", "300", "--ai-jobs", "50",
                        "--storage", "postgres", "--postgres", POSTGRES],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["scenario", "rps/value"]
    names = [line[:36].strip() for line in lines[1:-1]]
    for scenario in ("hello-world (bare aiohttp)", "feed, cached (embedded)", "feed, cached (redis)",
                     "feed, uncached, first page", "signed-in POST, embedded", "signed-in POST, redis",
                     "create → published, embedded", "create → published, redis", "backlog drain, redis",
                     "redis queue jobs/s", "popular job, seconds", "RSS MB, idle after start",
                     "RSS MB, idle after start (redis)", "AI job: cwalld.ai", "AI job: direct aiohttp client",
                     "cwalld migrate, seconds", "signed-in POST, postgres ×1", "feed, cached (postgres ×2)",
                     "create → published, postgres ×3", "feed, uncached (postgres ×3)"):
        assert scenario in names, scenario
    assert re.match(r"written to bench/results/\d{8}-\d{6}\.json", lines[-1])
    assert [line for line in lines if "not 2xx" in line] == []  # a row of refusals would measure refusals
