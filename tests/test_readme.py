"""The README's promises stay true: CI runs exactly its test command."""

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
