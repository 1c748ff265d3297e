"""Configuration: a TOML file plus environment overrides, turned into frozen dataclasses.

Every key is declared once, as a dataclass field with its default; the loader walks those
fields, so an unknown key, a wrong type or an impossible value is reported with the file and
the dotted key that is wrong (``ConfigError``), never as a traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


def _http_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as the AI's base URL, or None."""
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number in 1..65535, a broken [IPv6] literal
        usable = False
    if not usable:
        return "must be an http(s) URL with a host (and a numeric port, if any)"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user or password (the key goes in ai.api_key)"
    return None


class ConfigError(Exception):
    """Config problems, already phrased for the operator: ``file: key: what is wrong``, one line
    each. ``key`` and ``problem`` are the first one's; ``problems`` holds them all, so a file with
    three mistakes is fixed in one go."""

    def __init__(self, source: str, key: str, problem: str, more: list[ConfigError] | None = None) -> None:
        self.line = f"{source}: {key}: {problem}" if key else f"{source}: {problem}"
        self.source, self.key, self.problem = source, key, problem
        self.problems = [self, *(more or [])]
        super().__init__("\n".join(p.line for p in self.problems))

    @classmethod
    def of(cls, problems: list[ConfigError]) -> ConfigError:
        first = problems[0]
        return cls(first.source, first.key, first.problem, problems[1:])


ROLES = ("http", "consumers", "scheduler")  # what one process runs ([server].roles); by default all three


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 16384
    cors_origins: list[str] = field(default_factory=list)
    control_socket: str = ""  # empty: ./data/cwalld-<port>.sock, one per daemon (Server.socket)
    metrics_token: str = ""
    trusted_proxies: list[str] = field(default_factory=list)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_connections: int = 1000
    roles: list[str] = field(default_factory=lambda: list(ROLES))

    @property
    def socket(self) -> str:
        """The control socket: the configured path, else one named by the port, so two daemons
        on one machine never share one."""
        return self.control_socket or f"./data/cwalld-{self.port}.sock"


@dataclass(frozen=True)
class Storage:
    path: str = "./data/cwall.db"
    synchronous: str = "full"
    url: str = ""  # postgresql://USER@HOST:PORT/DB: PostgreSQL instead of the SQLite file at path
    password_file: str = ""
    pool_size: int = 10


@dataclass(frozen=True)
class Redis:
    url: str = ""
    password_file: str = ""
    prefix: str = "cwall:"


@dataclass(frozen=True)
class Queue:
    concurrency: int = 5
    job_timeout: float = 10.0
    retries: int = 3
    backoff: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0])
    shutdown_grace: float = 20.0
    keep_finished: int = 1000
    keep_finished_seconds: float = 86400.0
    sweep_grace: float = 30.0


DEFAULT_CRISIS = (
    "Yalnız değilsin. Kendine zarar verme düşüncelerin varsa lütfen hemen 112'yi ara "
    "ya da güvendiğin biriyle konuş."
)
DEFAULT_CRISIS_EN = (
    "You are not alone. If you are thinking about hurting yourself, please call 112 now "
    "or talk to someone you trust."
)
LANGUAGES = ("tr", "en")


@dataclass(frozen=True)
class CrisisMessage:
    """One help line per language; the earlier single string is accepted for every language."""

    tr: str = DEFAULT_CRISIS
    en: str = DEFAULT_CRISIS_EN


@dataclass(frozen=True)
class FallbackReplies:
    """One set per language; empty = the built-in set (a plain list is taken for every language)."""

    tr: list[str] = field(default_factory=list)
    en: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AI:
    api_key: str = ""
    api_key_file: str = ""
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    request_timeout: float = 5.0
    max_retry_after: float = 60.0
    breaker_failures: int = 5
    breaker_cooldown: float = 10.0
    regenerate_per_minute: float = 60.0
    max_reply_chars: int = 600
    language: str = "tr"
    moderation: bool = True
    moderation_model: str = "omni-moderation-latest"
    crisis_message: CrisisMessage = field(default_factory=CrisisMessage)
    fallback_replies: FallbackReplies = field(default_factory=FallbackReplies)


@dataclass(frozen=True)
class Limits:
    daily_confessions: int = 5
    content_min: int = 10
    content_max: int = 2000


@dataclass(frozen=True)
class Cache:
    enabled: bool = True
    max_entries: int = 10000
    max_bytes: int = 64 * 2**20
    feed_ttl: float = 300.0
    popular_ttl: float = 3600.0
    stats_ttl: float = 3600.0
    ai_response_ttl: float = 604800.0


@dataclass(frozen=True)
class Auth:
    token_ttl_days: int = 30
    login_attempts_per_minute: int = 10
    login_attempts_per_client_minute: int = 30
    registrations_per_hour: int = 5


@dataclass(frozen=True)
class Popular:
    schedule: str = "0 */6 * * *"
    threshold: int = 100
    min_account_age_hours: float = 24.0
    window_days: int = 7


@dataclass(frozen=True)
class Scheduler:
    timezone: str = "UTC"
    recovery: str = "* * * * *"
    queue_clean: str = "15 4 * * *"
    sessions_purge: str = "45 4 * * *"
    claim_timeout: float = 600.0


@dataclass(frozen=True)
class Moderation:
    auto_hide_reports: int = 5
    on_unavailable: str = "publish"
    report_min_account_age_hours: float = 24.0


@dataclass(frozen=True)
class Safety:
    crisis_terms: list[str] = field(default_factory=list)
    blocked_terms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Log:
    level: str = "info"
    format: str = "auto"
    slow_query_ms: float = 100.0
    stats_interval: float = 60.0
    client_addresses: bool = False  # off: an address beside a post's request id can name an anonymous author


@dataclass(frozen=True)
class Events:
    replay_seconds: float = 300.0
    max_per_client: int = 4
    heartbeat: float = 15.0


@dataclass(frozen=True)
class Privacy:
    exports_per_day: int = 3
    on_account_delete: str = "delete"  # or "detach": its confessions stay, with no author
    client_data_hours: float = 24.0  # the longest any client address (as an HMAC'd counter key) is kept

    @property
    def detach(self) -> bool:
        """A deleted account's confessions stay, with no author (else they go with it)."""
        return self.on_account_delete == "detach"


@dataclass(frozen=True)
class Backup:
    schedule: str = "30 3 * * *"  # empty: no scheduled backups
    dir: str = ""  # empty: a backups/ folder beside the database
    keep: int = 7

    def folder(self, database: str) -> str:
        return self.dir or str(Path(database).parent / "backups")


@dataclass(frozen=True)
class Category:
    slug: str
    name: str


DEFAULT_CATEGORIES = [
    Category("love", "Aşk"),
    Category("night_attack", "Gece Saldırısı"),
    Category("family", "Aile"),
    Category("school", "Okul"),
    Category("work", "İş"),
    Category("friendship", "Arkadaşlık"),
    Category("funny", "Komik"),
    Category("regret", "Pişmanlık"),
    Category("other", "Diğer"),
]


@dataclass(frozen=True)
class Config:
    server: Server = field(default_factory=Server)
    storage: Storage = field(default_factory=Storage)
    redis: Redis = field(default_factory=Redis)
    queue: Queue = field(default_factory=Queue)
    ai: AI = field(default_factory=AI)
    limits: Limits = field(default_factory=Limits)
    cache: Cache = field(default_factory=Cache)
    auth: Auth = field(default_factory=Auth)
    popular: Popular = field(default_factory=Popular)
    scheduler: Scheduler = field(default_factory=Scheduler)
    moderation: Moderation = field(default_factory=Moderation)
    safety: Safety = field(default_factory=Safety)
    log: Log = field(default_factory=Log)
    events: Events = field(default_factory=Events)
    backup: Backup = field(default_factory=Backup)
    privacy: Privacy = field(default_factory=Privacy)
    categories: list[Category] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    source: str = "<defaults>"


SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("categories", "source")}


DEFAULT_PATH = "/etc/cwalld/config.toml"


def load(path: str | os.PathLike[str] | None = None, env: typing.Mapping[str, str] | None = None,
         default: str | None = None) -> Config:
    """Load ``path``, else ``$CWALLD_CONFIG``, else ``default`` when it exists (the CLI passes
    DEFAULT_PATH, the service's file, so ``sudo cwalld check`` on the server sees what the
    service sees), else the built-in defaults; then apply env overrides."""
    env = os.environ if env is None else env
    path = path or env.get("CWALLD_CONFIG") or (default if default and os.path.exists(default) else None)
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(source, "", "file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(source, "", f"cannot read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(source, "", f"not valid TOML: {e}") from None
    return build(raw, source, env)


def build(raw: dict[str, Any], source: str = "<dict>", env: typing.Mapping[str, str] | None = None) -> Config:
    """Turn a parsed TOML document (plus env) into a checked ``Config``."""
    env = {} if env is None else env
    problems: list[ConfigError] = []
    _check_env_names(env, problems)
    for key in raw:
        if key not in SECTIONS and key != "categories":
            problems.append(ConfigError(source, key, "unknown section"))
    sections: dict[str, Any] = {}
    for name, f in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            problems.append(ConfigError(source, name, "must be a table"))
            table = {}
        table = dict(table)
        _apply_env(name, f.type, table, env, problems)
        sections[name] = _section(f.type, table, name, source, problems)
    _read_secrets(sections, env, source, problems)
    given = set(raw.get("storage", {}) if isinstance(raw.get("storage"), dict) else {}) | {
        k.removeprefix("CWALLD_STORAGE_").lower() for k in env if k.startswith("CWALLD_STORAGE_")}
    if sections["storage"].url and given & {"path", "synchronous"}:
        problems.append(ConfigError(source, "storage.path", "set storage.path (SQLite) or storage.url (PostgreSQL), not both"))
    try:
        sections["categories"] = _categories(raw.get("categories"), source)
    except ConfigError as e:
        problems.append(e)
    cfg = Config(**sections, source=source)
    _check(cfg, problems)  # a key whose type was wrong holds its default here
    if problems:
        raise ConfigError.of(problems)
    return cfg


def _section(cls_name: Any, table: dict[str, Any], section: str, source: str, problems: list[ConfigError]) -> Any:
    """The section's dataclass from its table; a wrong key is noted in ``problems`` and left at
    its default, so the rest is still checked."""
    cls = _class(cls_name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        if key not in fields:
            problems.append(ConfigError(source, f"{section}.{key}", "unknown key"))
            continue
        try:
            values[key] = _coerce(value, hints[key], f"{section}.{key}", source, problems)
        except ConfigError as e:
            problems.append(e)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, source: str, problems: list[ConfigError]) -> Any:
    if dataclasses.is_dataclass(hint):  # a table per language; one value stands for all of them
        table = value if isinstance(value, dict) else {f.name: value for f in dataclasses.fields(hint)}
        return _section(hint, table, key, source, problems)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(source, key, f"must be a list of {_name(item)}")
        return [_coerce(v, item, f"{key}[{i}]", source, problems) for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"must be a number, not {_toml(value)}")
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(source, key, f"must be {_name(hint)}, not {_toml(value)}")
    return value


def _toml(value: Any) -> str:
    """A value as it would be written in the file: ``true``, ``"text"``, ``[1, 2]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


def _name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _apply_env(section: str, cls_name: Any, table: dict[str, Any], env: typing.Mapping[str, str],
               problems: list[ConfigError]) -> None:
    """``CWALLD_<SECTION>_<KEY>`` for every key (a list or table as JSON), plus the seed's
    REDIS_* and the openai client's OPENAI_API_KEY and OPENAI_BASE_URL."""
    cls = _class(cls_name)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        var = f"CWALLD_{section}_{f.name}".upper()
        if var in env:
            try:
                table[f.name] = _parse_env(env[var], hints[f.name], var)
            except ConfigError as e:
                problems.append(e)
    if section == "ai":
        for var, key in (("OPENAI_API_KEY", "api_key"), ("OPENAI_BASE_URL", "base_url")):
            if env.get(var) and f"CWALLD_AI_{key.upper()}" not in env:
                table[key] = env[var]
    if section == "redis" and "CWALLD_REDIS_URL" not in env and (env.get("REDIS_HOST") or env.get("REDIS_PORT")):
        host = env.get("REDIS_HOST") or "127.0.0.1"
        port = env.get("REDIS_PORT") or "6379"
        password = env.get("REDIS_PASSWORD")
        auth = f":{quote(password, safe='')}@" if password else ""
        table["url"] = f"redis://{auth}{host}:{port}/0"


def _read_secrets(sections: dict[str, Any], env: typing.Mapping[str, str], source: str,
                  problems: list[ConfigError]) -> None:
    """``ai.api_key_file``, ``redis.password_file`` and ``storage.password_file``: secrets kept out
    of the config file, in files only root (or the service, through systemd's LoadCredential=) can read."""
    ai, redis, storage = sections["ai"], sections["redis"], sections["storage"]
    try:
        if ai.api_key_file:
            if ai.api_key:
                raise ConfigError(source, "ai.api_key_file", "set ai.api_key or ai.api_key_file, not both")
            sections["ai"] = dataclasses.replace(ai, api_key=_read_secret(ai.api_key_file, "ai.api_key_file", source, env))
    except ConfigError as e:
        problems.append(e)
    for name, server in (("redis", redis), ("storage", storage)):
        try:
            if server.password_file:
                if not server.url:
                    raise ConfigError(source, f"{name}.password_file", f"needs {name}.url (the server to use it with)")
                if _has_password(server.url):
                    raise ConfigError(source, f"{name}.password_file", f"{name}.url has a password already")
                password = quote(_read_secret(server.password_file, f"{name}.password_file", source, env), safe="")
                sections[name] = dataclasses.replace(server, url=_with_password(server.url, password))
        except ConfigError as e:
            problems.append(e)


def _read_secret(path: str, key: str, source: str, env: typing.Mapping[str, str]) -> str:
    """The text of ``path``, trimmed. Under systemd the service user cannot read the 0600
    original: ``LoadCredential=<file name>:<path>`` puts a copy in ``$CREDENTIALS_DIRECTORY``,
    found by the file's name."""
    where = Path(path)
    if env.get("CREDENTIALS_DIRECTORY") and (Path(env["CREDENTIALS_DIRECTORY"]) / where.name).is_file():
        where = Path(env["CREDENTIALS_DIRECTORY"]) / where.name
    try:
        text = where.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, key, f"cannot read {where}: {getattr(e, 'strerror', None) or e}") from None
    if not text:
        raise ConfigError(source, key, f"{where} is empty")
    return text


def _has_password(url: str) -> bool:
    return ":" in url.partition("://")[2].rpartition("@")[0] or "password=" in url


def _with_password(url: str, password: str) -> str:
    """``url`` with the (quoted) password put where redis-py reads it."""
    scheme, sep, rest = url.partition("://")
    if scheme == "unix":
        return f"{url}{'&' if '?' in url else '?'}password={password}"
    userinfo, _, hostport = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo}:{password}@{hostport}"


SECRETS = ("ai.api_key", "redis.url", "storage.url", "server.metrics_token")


def exposed_secrets(cfg: Config) -> list[tuple[str, str]]:
    """``(file, key)`` for each secret of ``cfg`` in a file every user may read: the config file
    itself, or a ``*_file`` (``cwalld check`` warns)."""
    def world_readable(path: str) -> bool:
        try:
            return bool(os.stat(path).st_mode & 0o004)
        except OSError:
            return False

    out = []
    if cfg.source != "<defaults>" and world_readable(cfg.source):
        raw = tomllib.loads(Path(cfg.source).read_text(encoding="utf-8"))
        for key in SECRETS:
            section, name = key.split(".")
            value = raw.get(section, {}).get(name)
            if value and (not key.endswith(".url") or _has_password(str(value))):
                out.append((cfg.source, key))
    for path, key in ((cfg.ai.api_key_file, "ai.api_key"), (cfg.redis.password_file, "redis.password"),
                      (cfg.storage.password_file, "storage.password")):
        if path and world_readable(path):
            out.append((path, key))
    return out


def _check_env_names(env: typing.Mapping[str, str], problems: list[ConfigError]) -> None:
    """A ``CWALLD_*`` variable that names no key is a mistake (a typo would otherwise be silent)."""
    known = {"CWALLD_CONFIG"} | {f"CWALLD_{name}_{f.name}".upper() for name, section in SECTIONS.items()
                                 for f in dataclasses.fields(_class(section.type))}
    for var in sorted(env):
        if var.startswith("CWALLD_") and var not in known:
            problems.append(ConfigError("environment", var,
                                        "unknown setting (CWALLD_<SECTION>_<KEY>, e.g. CWALLD_SERVER_PORT)"))


def _class(cls_name: Any) -> Any:
    return globals()[cls_name] if isinstance(cls_name, str) else cls_name


def _parse_env(text: str, hint: Any, var: str) -> Any:
    if hint not in (str, int, float, bool):  # a list or a table: JSON, checked like TOML after
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigError("environment", var, f"must be JSON (a list or a table), not {text!r}") from None
    try:
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return hint(text)
    except ValueError:
        raise ConfigError("environment", var, f"must be {_name(hint)}, not {text!r}") from None


def _categories(value: Any, source: str) -> list[Category]:
    if value is None:
        return list(DEFAULT_CATEGORIES)
    if not isinstance(value, list) or not value:
        raise ConfigError(source, "categories", "must be a non-empty array of tables [[categories]]")
    out: list[Category] = []
    for i, item in enumerate(value):
        key = f"categories[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(source, key, "must be a table with slug and name")
        for k in item:
            if k not in ("slug", "name"):
                raise ConfigError(source, f"{key}.{k}", "unknown key")
        for k in ("slug", "name"):
            if not isinstance(item.get(k), str) or not item[k]:
                raise ConfigError(source, f"{key}.{k}", "must be a non-empty string")
        out.append(Category(item["slug"], item["name"]))
    if len({c.slug for c in out}) != len(out):
        raise ConfigError(source, "categories", "slugs must be unique")
    return out


def _check(cfg: Config, problems: list[ConfigError]) -> None:
    """Values that have the right type but cannot work."""
    s = cfg.source

    def need(ok: bool, key: str, problem: str) -> None:
        if not ok:
            problems.append(ConfigError(s, key, problem))

    need(1 <= cfg.server.port <= 65535, "server.port", "must be between 1 and 65535")
    need(cfg.server.max_body_bytes >= 1024, "server.max_body_bytes", "must be at least 1024")
    for key in ("header_timeout", "body_timeout", "keepalive_timeout"):
        need(getattr(cfg.server, key) > 0, f"server.{key}", "must be greater than 0")
    need(cfg.server.max_connections >= 1, "server.max_connections", "must be at least 1")
    roles = cfg.server.roles
    if not roles or any(r not in ROLES for r in roles) or len(set(roles)) != len(roles):
        need(False, "server.roles", f"must name some of {', '.join(ROLES)}, each once, not {_toml(roles)}")
    else:  # without Redis the queue lives in one process: its consumers must be the ones it enqueues to
        need(set(roles) == set(ROLES) or bool(cfg.redis.url), "server.roles",
             "only some roles need redis.url (without Redis the queue is one process's own)")
    need(bool(cfg.storage.path), "storage.path", "must not be empty")
    need(cfg.storage.url == "" or cfg.storage.url.split("://")[0] in ("postgresql", "postgres"),
         "storage.url", "must start with postgresql:// (or be empty: SQLite at storage.path)")
    need(cfg.storage.pool_size >= 1, "storage.pool_size", "must be at least 1")
    need(cfg.storage.synchronous in ("full", "normal"), "storage.synchronous", "must be full or normal")
    need(cfg.redis.url == "" or cfg.redis.url.split("://")[0] in ("redis", "rediss", "unix"),
         "redis.url", "must start with redis://, rediss:// or unix://")
    need(cfg.queue.concurrency >= 1, "queue.concurrency", "must be at least 1")
    need(cfg.queue.job_timeout > 0, "queue.job_timeout", "must be greater than 0")
    need(cfg.queue.keep_finished >= 0, "queue.keep_finished", "must be 0 or more")
    need(cfg.queue.keep_finished_seconds >= 0, "queue.keep_finished_seconds", "must not be negative")
    need(cfg.queue.sweep_grace >= 0, "queue.sweep_grace", "must not be negative")
    need(cfg.queue.shutdown_grace >= 0, "queue.shutdown_grace", "must not be negative")
    need(cfg.queue.retries >= 0, "queue.retries", "must be 0 or more")
    need(all(b >= 0 for b in cfg.queue.backoff), "queue.backoff", "delays must not be negative")
    need(bool(cfg.queue.backoff) or cfg.queue.retries == 0, "queue.backoff", "needs at least one delay when retries > 0")
    need(cfg.ai.request_timeout > 0, "ai.request_timeout", "must be greater than 0")
    need(cfg.ai.max_retry_after >= 0, "ai.max_retry_after", "must not be negative")
    need(cfg.ai.breaker_failures >= 1, "ai.breaker_failures", "must be at least 1")
    need(cfg.ai.breaker_cooldown > 0, "ai.breaker_cooldown", "must be greater than 0")
    need(cfg.ai.regenerate_per_minute > 0, "ai.regenerate_per_minute", "must be greater than 0")
    need(cfg.ai.max_reply_chars >= 20, "ai.max_reply_chars", "must be at least 20")
    url_problem = _http_url_problem(cfg.ai.base_url)
    need(url_problem is None, "ai.base_url", url_problem or "")
    need(not any(c in cfg.ai.api_key for c in "\r\n\0"), "ai.api_key", "must be one line")
    need(cfg.ai.language in LANGUAGES, "ai.language", "must be tr or en")
    for lang in LANGUAGES:
        need(all(r.strip() for r in getattr(cfg.ai.fallback_replies, lang)), f"ai.fallback_replies.{lang}",
             "replies must not be empty")
        need(bool(getattr(cfg.ai.crisis_message, lang).strip()), f"ai.crisis_message.{lang}", "must not be empty")
    need(cfg.limits.daily_confessions >= 1, "limits.daily_confessions", "must be at least 1")
    need(1 <= cfg.limits.content_min <= cfg.limits.content_max, "limits.content_min",
         "must be at least 1 and not above limits.content_max")
    need(cfg.cache.max_entries >= 1, "cache.max_entries", "must be at least 1")
    need(cfg.cache.max_bytes >= 2**16, "cache.max_bytes", "must be at least 65536")
    for key in ("feed_ttl", "popular_ttl", "stats_ttl", "ai_response_ttl"):
        need(getattr(cfg.cache, key) > 0, f"cache.{key}", "must be greater than 0")
    need(cfg.auth.token_ttl_days >= 1, "auth.token_ttl_days", "must be at least 1")
    need(cfg.auth.login_attempts_per_minute >= 1, "auth.login_attempts_per_minute", "must be at least 1")
    need(cfg.auth.login_attempts_per_client_minute >= 1, "auth.login_attempts_per_client_minute", "must be at least 1")
    need(cfg.auth.registrations_per_hour >= 1, "auth.registrations_per_hour", "must be at least 1")
    for i, proxy in enumerate(cfg.server.trusted_proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            need(False, f"server.trusted_proxies[{i}]", f"not an address or network: {_toml(proxy)}")
    need(croniter.is_valid(cfg.popular.schedule), "popular.schedule", f"not a valid cron expression: {_toml(cfg.popular.schedule)}")
    for key in ("recovery", "queue_clean", "sessions_purge"):
        expr = getattr(cfg.scheduler, key)
        need(croniter.is_valid(expr), f"scheduler.{key}", f"not a valid cron expression: {_toml(expr)}")
    need(cfg.scheduler.claim_timeout > 0, "scheduler.claim_timeout", "must be greater than 0")
    need(cfg.backup.schedule == "" or croniter.is_valid(cfg.backup.schedule), "backup.schedule",
         f"not a valid cron expression (or empty: off): {_toml(cfg.backup.schedule)}")
    need(cfg.backup.keep >= 1, "backup.keep", "must be at least 1")
    need(cfg.privacy.exports_per_day >= 1, "privacy.exports_per_day", "must be at least 1")
    need(cfg.privacy.client_data_hours > 0, "privacy.client_data_hours", "must be greater than 0")
    need(cfg.privacy.on_account_delete in ("delete", "detach"), "privacy.on_account_delete", "must be delete or detach")
    try:
        ZoneInfo(cfg.scheduler.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        need(False, "scheduler.timezone", f"unknown time zone {_toml(cfg.scheduler.timezone)}")
    for key in ("crisis_terms", "blocked_terms"):
        need(all(t.strip() for t in getattr(cfg.safety, key)), f"safety.{key}", "terms must not be empty")
    need(cfg.moderation.auto_hide_reports >= 1, "moderation.auto_hide_reports", "must be at least 1")
    need(cfg.moderation.on_unavailable in ("publish", "hold"), "moderation.on_unavailable", "must be publish or hold")
    need(cfg.popular.threshold >= 1, "popular.threshold", "must be at least 1")
    need(cfg.popular.min_account_age_hours >= 0, "popular.min_account_age_hours", "must not be negative")
    need(cfg.popular.window_days >= 0, "popular.window_days", "must be 0 (all time) or more")
    need(cfg.moderation.report_min_account_age_hours >= 0, "moderation.report_min_account_age_hours",
         "must not be negative")
    need(cfg.log.level in ("debug", "info", "warning", "error"), "log.level", "must be debug, info, warning or error")
    need(cfg.log.format in ("auto", "json", "console"), "log.format", "must be auto, json or console")
    need(cfg.log.slow_query_ms >= 0, "log.slow_query_ms", "must not be negative")
    need(cfg.log.stats_interval > 0, "log.stats_interval", "must be greater than 0")
    need(cfg.events.replay_seconds >= 0, "events.replay_seconds", "must not be negative")
    need(cfg.events.max_per_client >= 1, "events.max_per_client", "must be at least 1")
    need(cfg.events.heartbeat > 0, "events.heartbeat", "must be greater than 0")


def replace(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy with some keys changed, e.g. ``replace(cfg, queue={"retries": 0})`` (tests, CLI)."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return dataclasses.replace(cfg, **changes)


def checked(cfg: Config) -> Config:
    """``cfg`` if its values can work together (after a ``replace`` from the command line)."""
    problems: list[ConfigError] = []
    _check(cfg, problems)
    if problems:
        raise ConfigError.of(problems)
    return cfg


