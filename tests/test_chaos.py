"""The chaos suite's short run (``python -m bench.chaos --short``): every fault, against real
daemons under load, loses nothing, publishes nothing twice and answers no 5xx."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_every_fault_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    run = subprocess.run([sys.executable, "-m", "bench.chaos", "--short", "--json", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    print(run.stdout)  # the table, for -s
    rows = json.loads(out.read_text())
    assert len(rows) == 10
    for row in rows:
        assert "scenario failed" not in row["note"], row
        assert row["accepted"] > 0 or row["note"].startswith("skipped"), row
        assert (row["lost"], row["duplicated"], row["errors_5xx"]) == (0, 0, 0), row
        assert row["published"] == row["accepted"], row
    assert run.returncode == 0, run.stderr[-2000:]
