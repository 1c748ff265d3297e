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


async def test_the_local_model_config_gets_replies_without_moderation(tmp_path: Path, fake_ai: Any,
                                                                      make_client: Any) -> None:
    """The README's "Using a local model" snippet, pointed at the fake server: replies come from the
    model and no moderation call is made."""
    import tomllib

    from cwalld import config
    from tests.conftest import Api, test_config

    readme = (ROOT / "README.md").read_text()
    snippet = tomllib.loads(readme.split("## Using a local model", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0])
    assert snippet["ai"]["moderation"] is False and snippet["ai"]["base_url"].startswith("http://127.0.0.1")
    cfg = config.replace(test_config(tmp_path, fake_ai.url), ai={**snippet["ai"], "base_url": fake_ai.url})
    api = Api(await make_client(cfg))
    token = await api.register()
    cid = (await (await api.post(token, content="Yerel modelle yazılan bir itiraf bu.")).json())["confession"]["id"]
    published = await api.wait_status(cid, token)
    assert published["ai_fallback"] is False and published["ai_response"]
    assert fake_ai.calls["chat"] == 1 and fake_ai.calls["moderations"] == 0
