"""The README's promises stay true: CI runs exactly its test command."""

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n#", 1)[0]
    commands = [block.split("\n", 1)[1].strip() for block in quickstart.split("```sh")[1:]]
    assert len(commands) == 2
    run, test = (c.split("```")[0].strip() for c in commands)
    assert run.endswith(".venv/bin/cwalld")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci


async def test_try_it_works_pasted_as_one_block(tmp_path: Path, daemons: Any) -> None:
    """Pasted as one block, "Try it" showed an empty feed: the GET beat the publish by 8 ms."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Try it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    d = daemons(tmp_path)
    await d.start()
    r = await asyncio.to_thread(subprocess.run, ["bash", "-euc", block.replace("127.0.0.1:8080", f"127.0.0.1:{d.port}")],
                                capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (first, *_) = json.loads(r.stdout.splitlines()[-1])["items"]
    assert first["content"] == "Sınavdan önce hiç çalışmadım ama geçtim." and first["ai_response"]
