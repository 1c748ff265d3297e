"""The benchmarks keep running (figures are printed, never asserted here)."""

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_queue_bench_prints_its_line() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.queue", "--jobs", "300"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert re.search(r"redis queue: [\d,]+ jobs/s +bare redis-py loop: [\d,]+ jobs/s +ratio \d+\.\d\d", out), out
