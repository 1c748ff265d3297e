"""Configuration: the example file is the defaults, env overrides work, bad values name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cwalld import config
from cwalld.config import ConfigError
from tests.conftest import ROOT, cwalld


def test_the_example_file_documents_exactly_the_defaults() -> None:
    example = config.load(ROOT / "config.toml.example", env={})
    assert dataclasses.replace(example, source="x") == dataclasses.replace(config.load(None, env={}), source="x")
    text = (ROOT / "config.toml.example").read_text()
    for section, f in config.SECTIONS.items():
        for key in dataclasses.fields(getattr(config, f.type) if isinstance(f.type, str) else f.type):
            documented = f"\n{key.name} = " in text or f"\n[{section}.{key.name}]" in text
            assert documented, f"{section}.{key.name} is not documented"


def test_env_overrides() -> None:
    cfg = config.load(None, env={
        "CWALLD_SERVER_PORT": "9001", "CWALLD_QUEUE_JOB_TIMEOUT": "2.5", "CWALLD_AI_MODERATION": "false",
        "OPENAI_API_KEY": "sk-test", "REDIS_HOST": "10.0.0.5", "REDIS_PASSWORD": "p@ss",
    })
    assert cfg.server.port == 9001 and cfg.queue.job_timeout == 2.5 and cfg.ai.moderation is False
    assert cfg.ai.api_key == "sk-test" and cfg.redis.url == "redis://:p%40ss@10.0.0.5:6379/0"
    assert config.load(None, env={"CWALLD_CONFIG": str(ROOT / "config.toml.example")}).source.endswith("example")


def test_floats_accepted_for_seconds() -> None:
    cfg = config.build({"queue": {"backoff": [0.2, 0.4, 0.8], "job_timeout": 3}})
    assert cfg.queue.backoff == [0.2, 0.4, 0.8] and cfg.queue.job_timeout == 3.0


@pytest.mark.parametrize("raw, key", [
    ({"server": {"prot": 1}}, "server.prot"),
    ({"serverr": {}}, "serverr"),
    ({"server": {"port": "8080"}}, "server.port"),
    ({"server": {"port": 0}}, "server.port"),
    ({"server": {"port": True}}, "server.port"),
    ({"queue": {"job_timeout": -1}}, "queue.job_timeout"),
    ({"queue": {"backoff": [1, "x"]}}, "queue.backoff[1]"),
    ({"ai": {"moderation": "yes"}}, "ai.moderation"),
    ({"popular": {"schedule": "every tuesday"}}, "popular.schedule"),
    ({"limits": {"content_min": 50, "content_max": 10}}, "limits.content_min"),
    ({"categories": [{"slug": "a"}]}, "categories[0].name"),
    ({"log": {"level": "loud"}}, "log.level"),
    ({"storage": {"synchronous": "off"}}, "storage.synchronous"),
    ({"scheduler": {"timezone": "Mars/Olympus"}}, "scheduler.timezone"),
    ({"ai": {"base_url": "http:///v1"}}, "ai.base_url"),
    ({"ai": {"base_url": "https://api.example:eighty/v1"}}, "ai.base_url"),
    ({"ai": {"base_url": "https://user:secret@api.example/v1"}}, "ai.base_url"),
    ({"ai": {"api_key": "sk-1\r\nX-Evil: 1"}}, "ai.api_key"),
])
def test_bad_values_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.build(raw, "my.toml")
    assert e.value.key == key and str(e.value).startswith(f"my.toml: {key}: ")


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CWALLD_SERVER_PORT: must be an integer"):
        config.load(None, env={"CWALLD_SERVER_PORT": "eighty"})


@pytest.mark.parametrize("command", ["serve", "check"])
def test_cli_exits_2_with_one_line_naming_file_and_key(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[queue]\nretries = 3\njob_timeout = -2.0\n')
    r = cwalld(command, "-c", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip() == f"cwalld: config error: {bad}: queue.job_timeout: must be greater than 0"
    assert r.stdout == ""


def test_cli_missing_and_broken_files(tmp_path: Path) -> None:
    r = cwalld("check", "-c", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "nope.toml: file not found" in r.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = 1")
    r = cwalld("check", "-c", str(broken))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr


def test_an_unknown_cwalld_variable_is_an_error_naming_it() -> None:
    """CWALLD_SERVER_PROT=1 was silently ignored (a TOML typo is an error)."""
    with pytest.raises(ConfigError) as e:
        config.load(None, env={"CWALLD_SERVER_PROT": "1"})
    assert e.value.key == "CWALLD_SERVER_PROT" and str(e.value).startswith("environment: CWALLD_SERVER_PROT: unknown")
    r = cwalld("check", env={"CWALLD_SERVER_PROT": "1"})
    assert r.returncode == 2 and "CWALLD_SERVER_PROT" in r.stderr


def test_lists_and_tables_in_the_environment_are_json() -> None:
    """CWALLD_SERVER_CORS_ORIGINS='["http://x"]' was dropped silently."""
    cfg = config.load(None, env={"CWALLD_SERVER_CORS_ORIGINS": '["http://x"]', "CWALLD_QUEUE_BACKOFF": "[1, 2.5]",
                                 "CWALLD_AI_CRISIS_MESSAGE": '{"en": "Call 988."}'})
    assert cfg.server.cors_origins == ["http://x"] and cfg.queue.backoff == [1.0, 2.5]
    assert cfg.ai.crisis_message.en == "Call 988." and cfg.ai.crisis_message.tr == config.DEFAULT_CRISIS
    with pytest.raises(ConfigError, match="CWALLD_SERVER_CORS_ORIGINS: must be JSON"):
        config.load(None, env={"CWALLD_SERVER_CORS_ORIGINS": "http://x"})
    with pytest.raises(ConfigError, match=r"server.cors_origins\[0\]: must be a string"):
        config.load(None, env={"CWALLD_SERVER_CORS_ORIGINS": "[1]"})


def test_openai_base_url_is_honoured_like_the_key() -> None:
    cfg = config.load(None, env={"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1", "OPENAI_API_KEY": "k"})
    assert cfg.ai.base_url == "http://127.0.0.1:11434/v1" and cfg.ai.api_key == "k"
    cfg = config.load(None, env={"OPENAI_BASE_URL": "http://a/v1", "CWALLD_AI_BASE_URL": "http://b/v1"})
    assert cfg.ai.base_url == "http://b/v1"  # ours wins


def test_values_are_shown_as_they_are_written_in_toml() -> None:
    """Errors showed booleans Python-style (`not True`) and strings in single quotes."""
    with pytest.raises(ConfigError) as e:
        config.build({"server": {"port": True}}, "my.toml")
    assert str(e.value) == "my.toml: server.port: must be an integer, not true"
    with pytest.raises(ConfigError) as e:
        config.build({"popular": {"schedule": "every 'hour'"}}, "my.toml")
    assert str(e.value).endswith('not a valid cron expression: "every \'hour\'"')
    with pytest.raises(ConfigError) as e:
        config.build({"queue": {"concurrency": [1, "2"]}}, "my.toml")
    assert str(e.value).endswith('must be an integer, not [1, "2"]')


def test_every_config_error_is_reported_at_once(tmp_path: Path) -> None:
    """Config errors stopped at the first one: fix, run, fix, run."""
    with pytest.raises(ConfigError) as e:
        config.build({"server": {"port": 0, "prot": 1}, "queue": {"retries": "3"}, "serverr": {},
                      "ai": {"crisis_message": {"en": ""}}}, "my.toml",
                     env={"CWALLD_LOG_LEVL": "x", "CWALLD_CACHE_FEED_TTL": "soon"})
    assert [p.key for p in e.value.problems] == [
        "CWALLD_LOG_LEVL", "serverr", "server.prot", "queue.retries", "CWALLD_CACHE_FEED_TTL",
        "server.port", "ai.crisis_message.en"]
    assert str(e.value).splitlines()[0] == "environment: CWALLD_LOG_LEVL: unknown setting (CWALLD_<SECTION>_<KEY>, e.g. CWALLD_SERVER_PORT)"
    bad = tmp_path / "bad.toml"
    bad.write_text('[queue]\nretries = -1\njob_timeout = -2.0\n')
    r = cwalld("check", "-c", str(bad))
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"cwalld: config error: {bad}: queue.job_timeout: must be greater than 0",
        f"cwalld: config error: {bad}: queue.retries: must be 0 or more"]


def test_without_c_the_servers_config_file_is_read_when_it_exists(tmp_path: Path) -> None:
    """`sudo cwalld check` on the server checked ./data/cwall.db, not the service's database."""
    etc = tmp_path / "config.toml"
    assert config.load(None, env={}, default=str(etc)).source == "<defaults>"  # absent: defaults
    etc.write_text('[storage]\npath = "/var/lib/cwalld/cwall.db"\n')
    assert config.load(None, env={}, default=str(etc)).storage.path == "/var/lib/cwalld/cwall.db"
    assert config.load(None, env={"CWALLD_CONFIG": str(ROOT / "config.toml.example")},
                       default=str(etc)).storage.path == "./data/cwall.db"
    assert config.DEFAULT_PATH == "/etc/cwalld/config.toml"
    assert "/etc/cwalld/config.toml" in " ".join(cwalld("--help").stdout.split())


def test_the_unit_passes_the_config_file_and_sets_no_paths() -> None:
    unit = (ROOT / "systemd" / "cwalld.service").read_text()
    assert "ExecStart=/usr/bin/cwalld serve -c /etc/cwalld/config.toml" in unit
    assert [line for line in unit.splitlines() if line.startswith("Environment=")] == []


def test_secrets_are_read_from_their_own_files(tmp_path: Path) -> None:
    """The README had the API key written into a 0644 config file."""
    key, password = tmp_path / "ai-api-key", tmp_path / "redis-password"
    key.write_text("sk-from-file\n")
    password.write_text("p@ss/word\n")
    cfg = config.build({"ai": {"api_key_file": str(key)},
                        "redis": {"url": "redis://10.0.0.5:6379/0", "password_file": str(password)}}, env={})
    assert cfg.ai.api_key == "sk-from-file" and cfg.redis.url == "redis://:p%40ss%2Fword@10.0.0.5:6379/0"
    # under systemd, LoadCredential= puts a copy the service user can read in $CREDENTIALS_DIRECTORY
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ai-api-key").write_text("sk-credential")
    cfg = config.build({"ai": {"api_key_file": str(key)}}, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.ai.api_key == "sk-credential"


@pytest.mark.parametrize("raw, key, problem", [
    ({"ai": {"api_key_file": "/nonexistent/ai-api-key"}}, "ai.api_key_file", "cannot read /nonexistent/ai-api-key"),
    ({"ai": {"api_key": "sk-x", "api_key_file": "K"}}, "ai.api_key_file", "set ai.api_key or ai.api_key_file, not both"),
    ({"redis": {"password_file": "P"}}, "redis.password_file", "needs redis.url"),
    ({"redis": {"url": "redis://:x@h:6379/0", "password_file": "P"}}, "redis.password_file",
     "redis.url has a password already"),
])
def test_secret_file_mistakes_name_the_key(tmp_path: Path, raw: dict, key: str, problem: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError) as e:
        config.build(raw, "my.toml", env={})
    assert e.value.key == key and problem in e.value.problem
    with pytest.raises(ConfigError, match="ai.api_key_file: .* is empty"):
        config.build({"ai": {"api_key_file": str(empty)}}, env={})


def test_check_warns_when_others_can_read_a_secret(tmp_path: Path) -> None:
    key = tmp_path / "ai-api-key"
    key.write_text("sk-x")
    key.chmod(0o644)
    inline = tmp_path / "inline.toml"
    inline.write_text(f'[storage]\npath = "{tmp_path / "db"}"\n[ai]\napi_key = "sk-inline"\nbase_url = "http://127.0.0.1:9/v1"\n')
    inline.chmod(0o644)
    r = cwalld("check", "-c", str(inline))
    assert f"secrets  WARNING   {inline} (0644) holds ai.api_key and every user can read it" in r.stdout, r.stdout
    from_file = tmp_path / "file.toml"
    from_file.write_text(f'[storage]\npath = "{tmp_path / "db"}"\n[ai]\napi_key_file = "{key}"\n'
                         'base_url = "http://127.0.0.1:9/v1"\n')
    r = cwalld("check", "-c", str(from_file))
    assert f"secrets  WARNING   {key} (0644) holds ai.api_key and every user can read it" in r.stdout, r.stdout
    key.chmod(0o600)
    inline.chmod(0o600)
    for c in (inline, from_file):
        assert "secrets  ok" in cwalld("check", "-c", str(c)).stdout
