"""``cwalld`` on the command line: parse, call, print. Exit 0 ok, 1 failed, 2 bad config/usage."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from cwalld import __version__, config as configmod
from cwalld.config import Config, ConfigError

if TYPE_CHECKING:
    from cwalld.ai import AI

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run on uvloop where it is installed (it is a dependency; this keeps tests portable)."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro_fn())  # type: ignore[arg-type]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cwalld", description="Confession Wall daemon")
    p.add_argument("--version", action="version", version=f"cwalld {__version__}")
    p.add_argument("-c", "--config", help=f"TOML config file (default: $CWALLD_CONFIG, else {configmod.DEFAULT_PATH} "
                                          "when it exists, else built-in defaults)")
    sub = p.add_subparsers(dest="command")
    for name, text in (("serve", "run the daemon (the default)"), ("check", "check config, database, Redis and AI")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("-c", "--config", dest="sub_config", help=argparse.SUPPRESS)
        if name == "serve":
            sp.add_argument("--role", action="append", choices=configmod.ROLES, dest="roles",
                            help="run only this part (repeat for more); overrides [server].roles")
        if name == "check":
            sp.add_argument("--config-only", action="store_true",
                            help="only read and check the config (what systemctl reload runs first)")
    user = sub.add_parser("user", help="manage users (works on the database directly)")
    usub = user.add_subparsers(dest="user_command", required=True)
    create = usub.add_parser("create", help="create a user; asks for the password (twice, not shown)")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make the user an admin")
    password = usub.add_parser("password", help="set a user's password (signs them out everywhere)")
    password.add_argument("username")
    for sp in (create, password):
        sp.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input, for scripts (never from the command line)")
    for name, text in (("promote", "make a user an admin"), ("demote", "revoke a user's admin rights")):
        usub.add_parser(name, help=text).add_argument("username")
    delete = usub.add_parser("delete", help="delete an account and everything about it, all its confessions too "
                                            "(asks the running daemon, so caches and live updates follow)")
    delete.add_argument("username")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    # operator commands: they ask the running daemon over its control socket
    queue = sub.add_parser("queue", help="the AI job queue of the running daemon")
    qsub = queue.add_subparsers(dest="queue_command", required=True)
    qsub.add_parser("stats", help="waiting, active, delayed, completed, fallback, held, failed")
    clean = qsub.add_parser("clean", help="forget finished job records older than --grace seconds")
    clean.add_argument("--grace", type=int, default=0)
    qsub.add_parser("retry-failed", help="queue every failed job again")
    cache = sub.add_parser("cache", help="the cache of the running daemon")
    csub = cache.add_subparsers(dest="cache_command", required=True)
    csub.add_parser("clear", help="drop cached entries").add_argument("scope", choices=["feed", "popular", "stats", "all"])
    jobs = sub.add_parser("jobs", help="scheduled jobs of the running daemon")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True)
    jsub.add_parser("list", help="jobs, schedules, next and last runs")
    jsub.add_parser("run", help="run a job now").add_argument("name")
    ai = sub.add_parser("ai", help="the AI replies of the running daemon")
    asub = ai.add_subparsers(dest="ai_command", required=True)
    regen = asub.add_parser("regenerate", help="ask the AI again for fallback replies; shows progress")
    regen.add_argument("--since", default="7d", help="how far back: 30m, 12h, 7d … or all (default 7d)")
    regen.add_argument("--dry-run", action="store_true", help="only count them")
    backup = sub.add_parser("backup", help="an online, checked copy of the database (asks the running daemon, "
                                           "else copies the file itself)")
    backup.add_argument("file")
    restore = sub.add_parser("restore", help="put a backup in place of the database (the daemon must be stopped; "
                                             "the old one is kept as *.before-restore)")
    restore.add_argument("file")
    move = sub.add_parser("migrate", help="copy a wall from its SQLite file into an empty PostgreSQL database "
                                          "(then set [storage].url)")
    move.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH")
    move.add_argument("--to", dest="target", required=True, metavar="postgresql://USER@HOST:PORT/DB")
    move.add_argument("-c", "--config", dest="sub_config", help=argparse.SUPPRESS)
    for sp in (backup, restore):
        sp.add_argument("-c", "--config", dest="sub_config", help=argparse.SUPPRESS)
        which = sp.add_mutually_exclusive_group()
        which.add_argument("--socket", help="the daemon's control socket (default: [server].control_socket)")
        which.add_argument("--port", type=int, help="the daemon serving this port (its default socket)")
    for group in (usub, qsub, csub, jsub, asub):
        for sp in group.choices.values():
            sp.add_argument("-c", "--config", dest="sub_config", help=argparse.SUPPRESS)
            sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
            if group is not usub:  # which running daemon to ask, when one machine runs several
                which = sp.add_mutually_exclusive_group()
                which.add_argument("--socket", help="its control socket (default: [server].control_socket)")
                which.add_argument("--port", type=int, help="the daemon serving this port (its default socket)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = configmod.load(getattr(args, "sub_config", None) or args.config, default=configmod.DEFAULT_PATH)
        if getattr(args, "roles", None):
            cfg = configmod.checked(configmod.replace(cfg, server={"roles": args.roles}))
    except ConfigError as e:
        for problem in e.problems:
            print(f"cwalld: config error: {problem.line}", file=sys.stderr)
        return 2
    command = args.command or "serve"
    if command == "serve":
        from cwalld import app, logs

        logs.setup(cfg.log.level, cfg.log.format)
        try:
            run(lambda: app.serve(cfg))
        except app.StartFailed as e:
            logs.flush()
            print(f"cwalld: {e}", file=sys.stderr)
            return 1
        return 0
    if command == "check" and args.config_only:
        print(f"config   ok        {cfg.source}")
        return 0
    if command == "check":
        return run(lambda: check(cfg))
    if command == "user" and args.user_command in ("create", "password"):
        secret = read_password(args.password_stdin)
        if secret is None:
            return 1
        if args.user_command == "password":
            return run(lambda: on_database(cfg, lambda db: user_password(db, args.username, secret),
                                           f"no user {args.username!r}"))
        return run(lambda: on_database(cfg, lambda db: user_create(db, args.username, secret, args.admin)))
    if command == "user" and args.user_command == "delete":
        return run(lambda: user_delete(cfg, args.username, args.yes))
    if command == "user":
        return run(lambda: on_database(cfg, lambda db: user_admin(db, args.username, args.user_command == "promote"),
                                       f"no user {args.username!r}"))
    if getattr(args, "port", None):  # that daemon's default socket
        cfg = configmod.replace(cfg, server={"control_socket": "", "port": args.port})
    elif getattr(args, "socket", None):
        cfg = configmod.replace(cfg, server={"control_socket": args.socket})
    if command in ("backup", "restore"):
        return run(lambda: (take_backup if command == "backup" else put_back)(cfg, os.path.abspath(args.file)))
    if command == "ai":
        return run(lambda: regenerate(cfg, args.since, args.dry_run, args.json))
    if command == "migrate":
        return run(lambda: move_wall(args.source, args.target))
    method, path, payload = {
        ("queue", "stats"): ("GET", "/queue", None),
        ("queue", "clean"): ("POST", "/queue/clean", {"grace_seconds": getattr(args, "grace", 0)}),
        ("queue", "retry-failed"): ("POST", "/queue/retry-failed", None),
        ("cache", "clear"): ("POST", "/cache/clear", {"scope": getattr(args, "scope", None)}),
        ("jobs", "list"): ("GET", "/jobs", None),
        ("jobs", "run"): ("POST", f"/jobs/{getattr(args, 'name', '')}/run", None),
    }[(command, getattr(args, f"{command}_command"))]
    return run(lambda: control_call(cfg, method, path, payload, args.json))


async def check(cfg: Config) -> int:
    """One line per component; exit 1 if any is not usable."""
    from cwalld.ai import AI
    from cwalld.storage import where

    ok = True

    def line(name: str, state: str, detail: str = "") -> None:
        print(f"{name:<8} {state:<9} {detail}".rstrip())

    line("config", "ok", cfg.source)
    exposed = configmod.exposed_secrets(cfg)
    for path, key in exposed:
        mode = oct(os.stat(path).st_mode & 0o777)[2:].zfill(4)
        line("secrets", "WARNING", f"{path} ({mode}) holds {key} and every user can read it: chmod 600 {path}")
    if not exposed:
        line("secrets", "ok", "none in a file every user can read")
    try:  # read-only: check never creates or changes a file or a table
        if cfg.storage.url:
            from cwalld.storage import postgres

            schema: str | None = await postgres.inspect(cfg.storage.url)
        else:
            from cwalld.storage import sqlite

            schema = sqlite.inspect(cfg.storage.path)
        if schema is None:
            line("storage", "new", f"{where(cfg)}: not created yet (the first start creates it)")
        else:
            line("storage", "ok", f"{where(cfg)} ({schema})")
    except Exception as e:  # noqa: BLE001
        ok = False
        line("storage", "FAILED", f"{where(cfg)}: {e}")
    async def probe(name: str, detail: str, ping: Awaitable[object], close: Callable[[], Awaitable[object]]) -> bool:
        try:
            await ping
            line(name, "ok", detail)
            return True
        except Exception as e:  # noqa: BLE001 - any failure is the answer
            line(name, "FAILED", f"{detail}: {e}")
            return False
        finally:
            await close()

    if cfg.redis.url:
        from cwalld.redis_client import Coalesced

        client = Coalesced(cfg.redis.url, timeout=3, connect_timeout=3)
        ok &= await probe("redis", _redact(cfg.redis.url), client.call("PING"), client.aclose)
    else:
        line("redis", "disabled", "embedded queue and cache")
    ai = AI(cfg.ai)
    if ai.enabled:
        ok &= await ai_probe(ai, line)
    else:
        line("ai", "disabled", "no api key: confessions get fallback replies")
    return 0 if ok else 1


async def ai_probe(ai: AI, line: Callable[..., None]) -> bool:
    """GET <base_url>/models, naming the URL; a 404 there is not fatal: an OpenAI-compatible
    server (Ollama, llama.cpp) may answer chat without listing models."""
    from cwalld.ai import AIError

    url = ai.base + "/models"
    try:
        await ai.ping()
        line("ai", "ok", f"GET {url}")
        return True
    except AIError as e:
        if e.kind == "not_found":
            line("ai", "unsure", f"GET {url}: HTTP 404 — a compatible server may lack /models; replies may still work")
            return True
        line("ai", "FAILED", f"GET {url}: {e}")
        return False
    finally:
        await ai.close()


def read_password(from_stdin: bool) -> str | None:
    """From stdin (scripts), else asked twice on the terminal without echo; None if it cannot be."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print("cwalld: no terminal to ask the password on: pipe it with --password-stdin", file=sys.stderr)
        return None
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        print("cwalld: the passwords differ", file=sys.stderr)
        return None
    return first


async def on_database(cfg: Config, work: Callable[[Any], Awaitable[str | None]], missing: str = "") -> int:
    """A ``user`` command: ``work`` on the database directly; it returns the line to print, or
    None for ``missing``. A refusal of the domain's (a taken name, the last admin) is one line."""
    from cwalld.app import make_storage
    from cwalld.domain import DomainError

    storage = make_storage(cfg)
    await storage.open()
    try:
        said = await work(storage)
    except DomainError as e:
        print(f"cwalld: {e.message}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    if said is None:
        print(f"cwalld: {missing}", file=sys.stderr)
        return 1
    print(said)
    return 0


async def user_create(storage: Any, username: str, password: str, admin: bool) -> str:
    from cwalld.accounts import create_user

    user = await create_user(storage, username, password, admin=admin)
    return f"created user {user.username} (id {user.id}{', admin' if user.is_admin else ''})"


async def user_password(storage: Any, username: str, password: str) -> str | None:
    from cwalld.accounts import set_password

    found = await set_password(storage, username, password)
    return f"password of {username} set; their sessions are signed out" if found else None


async def user_admin(storage: Any, username: str, on: bool) -> str | None:
    user = await storage.set_admin(username, on)  # DomainError: the last admin
    return f"{user.username} is {'now' if on else 'no longer'} an admin" if user else None


class Refused(Exception):
    """The daemon cannot be asked, or said no: the message is for the operator."""


class NotRunning(Refused):
    """No daemon answers on the control socket."""


async def ask(cfg: Config, method: str, path: str, payload: object) -> dict:  # type: ignore[type-arg]
    """One request to the running daemon over its control socket."""
    import aiohttp

    sock = cfg.server.socket
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as s:
            async with s.request(method, "http://cwalld/api/v1/admin" + path, json=payload,
                                 timeout=aiohttp.ClientTimeout(total=120)) as r:
                if r.status == 204:
                    return {}
                body = await r.json()
                if r.status >= 400:
                    raise Refused(body["error"]["message"])
                return body  # type: ignore[no-any-return]
    except (aiohttp.ClientConnectionError, FileNotFoundError):
        raise NotRunning(f"the daemon is not running (no control socket at {sock})") from None


async def control_call(cfg: Config, method: str, path: str, payload: object, as_json: bool) -> int:
    """Ask the running daemon over its control socket; print a table (or JSON)."""
    import json

    try:
        body = await ask(cfg, method, path, payload)
    except Refused as e:
        print(f"cwalld: {e}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2, ensure_ascii=False) if as_json else render(body, cfg.scheduler.timezone))
    return 0


async def user_delete(cfg: Config, username: str, yes: bool) -> int:
    """Asked on a terminal first (type the name again). The running daemon does it, so its caches
    and live updates follow; with none running, the database directly."""
    if not yes:
        if not sys.stdin.isatty():
            print("cwalld: no terminal to confirm on: add --yes", file=sys.stderr)
            return 1
        typed = input(f"This deletes {username} and all their confessions, for ever. Type the username to confirm: ")
        if typed.strip() != username:
            print("cwalld: not confirmed; nothing deleted", file=sys.stderr)
            return 1
    try:
        await ask(cfg, "DELETE", f"/users/{username}", None)
    except NotRunning:
        async def remove(storage: Any) -> str | None:
            found = await storage.credentials(username)
            if found is None:
                return None
            removed = await storage.delete_user(found[0].id, cfg.privacy.detach)
            kept = "kept with no author" if cfg.privacy.detach else "deleted"
            return f"deleted {username}; {len(removed.confessions)} confessions {kept}"
        return await on_database(cfg, remove, f"no user {username!r}")
    except Refused as e:
        print(f"cwalld: {e}", file=sys.stderr)
        return 1
    print(f"deleted {username} (by the running daemon)")
    return 0


async def take_backup(cfg: Config, file: str) -> int:
    """The running daemon copies its database (it goes on serving); with none running, the
    file is copied here, the same way. Either way the copy is checked before it is named."""
    import sqlite3

    from cwalld.storage import backup

    if cfg.storage.url:
        print("cwalld: a PostgreSQL wall is backed up with its server's tools (pg_dump; README: Backups)",
              file=sys.stderr)
        return 1
    try:
        try:
            made = await ask(cfg, "POST", "/backup", {"file": file})
            how = "by the running daemon"
        except NotRunning:
            if not os.path.exists(cfg.storage.path):
                raise Refused(f"no database at {cfg.storage.path}") from None
            made = await asyncio.to_thread(backup.copy, cfg.storage.path, file)
            how = "from the database file (no daemon running)"
    except (Refused, OSError, sqlite3.Error) as e:
        print(f"cwalld: backup failed: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{k} {v:,}" for k, v in made["counts"].items())
    print(f"backup   {made['file']}  {made['bytes']:,} bytes in {made['seconds']} s, {how}; integrity ok")
    print(f"rows     {counts}")
    return 0


async def move_wall(source: str, target: str) -> int:
    """``migrate``: the whole wall into an empty PostgreSQL database, counts verified."""
    from cwalld.storage import move

    if not source.startswith("sqlite:") or not target.startswith(("postgresql://", "postgres://")):
        print("cwalld: migrate --from sqlite:PATH --to postgresql://USER@HOST:PORT/DB", file=sys.stderr)
        return 2
    try:
        done = await move.move(source.removeprefix("sqlite:"), target)
    except Exception as e:  # noqa: BLE001 - a refusal, a server that is not there: one line, nothing kept
        print(f"cwalld: migrate: {e}", file=sys.stderr)
        return 1
    print(f"moved    {source} -> the PostgreSQL database in {done['seconds']} s; counts verified")
    print("rows     " + ", ".join(f"{k} {v:,}" for k, v in done["rows"].items()))
    print("next     set [storage].url to it (and remove [storage].path), then start cwalld")
    return 0


async def put_back(cfg: Config, file: str) -> int:
    """``restore``: only with the daemon stopped (it holds the database open)."""
    import sqlite3

    from cwalld.storage import backup

    if cfg.storage.url:
        print("cwalld: a PostgreSQL wall is restored with its server's tools (pg_restore; README: Backups)",
              file=sys.stderr)
        return 1
    try:
        await ask(cfg, "GET", "/jobs", None)
        print(f"cwalld: the daemon is running (control socket {cfg.server.socket}): stop it first "
              "(systemctl stop cwalld)", file=sys.stderr)
        return 1
    except Refused:
        pass
    try:
        done = await asyncio.to_thread(backup.restore, file, cfg.storage.path)
    except (OSError, sqlite3.Error) as e:
        print(f"cwalld: restore failed: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{k} {v:,}" for k, v in done["counts"].items())  # type: ignore[attr-defined]
    print(f"restored {file} -> {done['file']}" + (f" (the old one kept as {done['kept']})" if done["kept"] else ""))
    print(f"rows     {counts}")
    print("start the daemon: it queues every pending confession again")
    return 0


async def regenerate(cfg: Config, since: str, dry_run: bool, as_json: bool, poll: float = 0.5) -> int:
    """Start a regeneration run and follow it: ``done / total`` as it goes, the counts at the end."""
    import json

    try:
        run = (await ask(cfg, "POST", "/ai/regenerate", {"since": since, "dry_run": dry_run}))["regeneration"]
        if dry_run:
            print(json.dumps(run) if as_json else f"would regenerate {run['total']} fallback replies (since {since})")
            return 0
        shown = -1
        while True:
            if not as_json and run["total"] and run["done"] != shown:
                shown = run["done"]
                print(f"regenerating {shown} / {run['total']}", flush=True)
            if not run["running"]:
                break
            await asyncio.sleep(poll)
            run = (await ask(cfg, "GET", "/ai/regenerate", None))["regeneration"]
    except Refused as e:
        print(f"cwalld: {e}", file=sys.stderr)
        return 1
    o = run["outcomes"]
    print(json.dumps(run) if as_json else
          f"replaced {o['replaced']} of {run['total']} fallback replies"
          f" ({o['hidden']} hidden by moderation, {o['kept']} unchanged, {o['failed']} failed: run again later)")
    return 0 if o["failed"] == 0 else 1


def render(body: dict, timezone: str = "UTC") -> str:  # type: ignore[type-arg]
    """A readable table of what the daemon answered; times in the schedules' zone, named."""
    if "jobs" in body:
        rows = [("job", "schedule", "next run", "last run", "result")]
        for j in body["jobs"]:
            last = j["last_run"] or {}
            outcome = last.get("error") or json_compact(last.get("result"))
            started = last.get("started_at")
            rows.append((j["name"], j["schedule"], local_time(j["next_run"], timezone),
                         local_time(started, timezone) if started else "never", outcome))
        return table(rows)
    values = body["result"] if "result" in body else body
    return table([(str(k), str(v)) for k, v in (values or {}).items()])


def local_time(iso: str, timezone: str) -> str:
    """``2026-12-03T09:00:00Z`` as ``2026-12-03 12:00:00 +03`` in ``timezone``: the zone the cron
    schedules are read in, said beside the time."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def json_compact(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")) if value else ""


def table(rows: Sequence[tuple[str, ...]]) -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def _redact(url: str) -> str:
    """The Redis URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
