"""Backups of the SQLite database while it serves, and putting one back.

``copy`` takes SQLite's online backup in one step: a read transaction, so the copy is one
consistent moment of the database and writers go on meanwhile (WAL). ``cp`` of a live database
can copy the file and its -wal at different moments: a corrupt copy. Every copy is checked
(``integrity_check``) before it gets its name, so a file named as a backup is a good one.

``restore`` puts a checked backup in place of a stopped daemon's database and keeps the old
one beside it as ``*.before-restore``; the next start queues every pending confession again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from cwalld.storage.sqlite import _migrations, private

TABLES = ("users", "sessions", "confessions", "empathies", "reports", "badges")
PREFIX = "cwall-"  # scheduled backups: cwall-YYYYmmdd-HHMMSS.db, so the names sort by time


def copy(source: str, target: str) -> dict[str, object]:
    """An online, consistent, checked copy of ``source`` at ``target`` (0600): file, bytes,
    seconds and row counts. Raises ``sqlite3.Error`` (or ``OSError``) and leaves no file named
    ``target`` when it fails."""
    started = time.perf_counter()
    partial = Path(f"{target}.partial")
    partial.unlink(missing_ok=True)
    Path(target).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(partial, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        src = sqlite3.connect(f"file:{quote(str(Path(source).resolve()))}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # all pages in one step: one snapshot
            finally:
                dst.close()
        finally:
            src.close()
        counts = check(str(partial))
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"file": str(Path(target).resolve()), "bytes": Path(target).stat().st_size,
            "seconds": round(time.perf_counter() - started, 3), "counts": counts}


def check(path: str) -> dict[str, int]:
    """Row counts of a backup that passes ``integrity_check`` and whose schema this cwalld knows
    (an older one is migrated at the next start); ``sqlite3.DatabaseError`` otherwise."""
    c = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?immutable=1", uri=True)
    try:
        verdict = [row[0] for row in c.execute("PRAGMA integrity_check")]
        if verdict != ["ok"]:
            raise sqlite3.DatabaseError(f"integrity_check failed: {'; '.join(verdict[:3])}")
        try:
            applied = {v for (v,) in c.execute("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError:
            raise sqlite3.DatabaseError("not a cwalld database (no schema_migrations)") from None
        known = {v for v, _ in _migrations()}
        if applied - known:
            raise sqlite3.DatabaseError(f"made by a newer cwalld (schema {max(applied)}; this one knows {max(known)})")
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        c.close()


def restore(backup: str, database: str) -> dict[str, object]:
    """Put ``backup`` (checked first) in place of ``database``, whose files are kept as
    ``<name>.before-restore`` (and its -wal, -shm). The daemon must be stopped."""
    counts = check(backup)
    db = Path(database)
    kept = None
    if db.exists():
        kept = f"{db}.before-restore"
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{db}{suffix}")
            if old.exists():
                os.replace(old, f"{kept}{suffix}")
    private(db)  # the folder 0700 and the file 0600, as a new database
    partial = Path(f"{db}.partial")
    shutil.copyfile(backup, partial)
    os.chmod(partial, 0o600)
    os.replace(partial, db)
    return {"file": str(db.resolve()), "kept": kept, "counts": counts}


def prune(folder: str, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest scheduled backups in ``folder``; the deleted names."""
    backups = sorted(Path(folder).glob(f"{PREFIX}*.db"))
    gone = backups[:-keep] if keep else backups
    for f in gone:
        f.unlink(missing_ok=True)
    return [str(f) for f in gone]
