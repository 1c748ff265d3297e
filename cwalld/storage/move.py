"""Moving a wall from its SQLite file to PostgreSQL (``cwalld migrate``).

Everything the wall keeps goes, with its ids, in one PostgreSQL transaction: users, sessions,
confessions, empathies, reports, badges, job runs and the shared secrets (so cursors handed out
and cache keys stay valid). The source is read in one SQLite read transaction — one moment, even
if a daemon still writes — and never changed. The target must be empty: this copies a wall, it
does not merge two. The counts of every table are compared inside the transaction before the
COMMIT, so a copy that does not match is never kept.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cwalld.storage import postgres, sqlite

# In foreign-key order. Sessions and the rest point at users; empathies and reports at confessions.
TABLES = ("users", "sessions", "confessions", "empathies", "reports", "badges", "job_runs", "meta")
WITH_IDS = ("users", "confessions", "job_runs")  # their identity sequences continue after the copied ids
BATCH = 10000


class Refused(Exception):
    """The move cannot start (a source or target that is not right for it): one line says why."""


def _source(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise Refused(f"no SQLite database at {path}")
    c = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True)
    try:
        applied = {v for (v,) in c.execute("SELECT version FROM schema_migrations")}
    except sqlite3.DatabaseError as e:
        c.close()
        raise Refused(f"{path} is not a cwalld database ({e})") from None
    todo = [v for v, _ in sqlite._migrations() if v not in applied]
    if todo:
        c.close()
        raise Refused(f"{path} is at an older schema: start this cwalld on it once (it migrates), then move it")
    return c


async def move(path: str, url: str) -> dict[str, Any]:
    """Copy the wall at ``path`` into the empty PostgreSQL database at ``url``; the rows of each
    table and the seconds it took."""
    started = time.monotonic()
    src = _source(path)
    target = postgres.PostgresStorage(url, pool_size=1)
    try:
        await target.open()  # creates the tables (or finds them) at the same schema version
        src.execute("BEGIN")  # one read transaction: one moment of the source
        async with target.pool.acquire() as c:
            for table in TABLES:
                if await c.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise Refused(f"the target database is not empty ({table} has rows): moving needs an empty one")
            counts: dict[str, int] = {}
            async with c.transaction():
                # The copied empathy_count already counts the copied empathies: no trigger adds them again.
                await c.execute("ALTER TABLE empathies DISABLE TRIGGER USER")
                for table in TABLES:
                    cur = src.execute(f"SELECT * FROM {table}")
                    columns = [d[0] for d in cur.description]
                    while rows := cur.fetchmany(BATCH):
                        await c.copy_records_to_table(table, records=rows, columns=columns)
                    source_rows = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    copied = await c.fetchval(f"SELECT count(*) FROM {table}")
                    if copied != source_rows:
                        raise Refused(f"{table}: {copied} rows copied of {source_rows}; nothing kept")
                    counts[table] = copied
                await c.execute("ALTER TABLE empathies ENABLE TRIGGER USER")
                for table in WITH_IDS:
                    await c.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                    f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")
            await c.execute("ANALYZE")  # the planner's statistics, now rather than at autovacuum's leisure
    finally:
        src.close()
        await target.close()
    return {"rows": counts, "seconds": round(time.monotonic() - started, 1)}
