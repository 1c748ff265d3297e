"""Log lines: JSON objects, and no secrets even in a traceback."""

import json

import structlog

from cwalld import logs


def test_json_lines_and_tracebacks_without_locals(capfd) -> None:  # type: ignore[no-untyped-def]
    saved = structlog.get_config()
    logs.setup("info", "json")
    try:
        log = structlog.get_logger("t")

        def login(password: str) -> None:
            raise ValueError("boom")

        try:
            login("hunter2-secret")
        except ValueError:
            log.exception("unhandled_error", path="/api/v1/auth/login")
        log.debug("hidden")
        out = capfd.readouterr().out
    finally:
        structlog.configure(**saved)
    lines = out.strip().splitlines()
    assert len(lines) == 1  # debug is below the level
    record = json.loads(lines[0])
    assert record["event"] == "unhandled_error" and record["level"] == "error" and record["timestamp"]
    assert record["exception"][0]["exc_type"] == "ValueError"
    assert "hunter2-secret" not in out
