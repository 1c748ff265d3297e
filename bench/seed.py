"""Seed a database through the storage adapter: users, published confessions, sessions.

Bulk rows go through the adapter's own connection in one transaction per batch (executemany),
so a million rows take seconds, not the hours a million API calls would.
"""

from __future__ import annotations

import hashlib
import random
import sys
from datetime import UTC, datetime, timedelta

import argon2

from cwalld.config import DEFAULT_CATEGORIES
from cwalld.storage.sqlite import SQLiteStorage

BATCH = 20000


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def seed(path: str, rows: int, users: int, tokens: int = 0, popular: int = 200) -> list[str]:
    """Fill ``path``; return ``tokens`` bearer tokens of distinct users (for signed-in scenarios)."""
    storage = SQLiteStorage(path, synchronous="OFF")
    await storage.open()
    w = storage.w
    rng = random.Random(7)
    password = argon2.PasswordHasher().hash("password123")
    start = datetime.now(UTC) - timedelta(days=30)
    await w.run(lambda db: db.executemany(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
        ((f"user_{i}", password, _ts(start)) for i in range(users))))
    slugs = [c.slug for c in DEFAULT_CATEGORIES]
    step = timedelta(days=29) / max(rows, 1)
    done = 0
    hot_ids: list[tuple[int, int]] = []  # (confession id, empathies it gets), for real empathy rows below
    while done < rows:
        n = min(BATCH, rows - done)
        batch = []
        for i in range(done, done + n):
            t = start + step * i
            hot = i % max(rows // popular, 1) == 0
            empathy = rng.randint(100, 500) if hot else rng.randint(0, 99)
            if hot:  # real rows: the popular job counts who gave them (accounts' age, not the author)
                hot_ids.append((i + 1, min(empathy, users)))
                empathy = 0  # the empathy_added trigger counts the rows
            batch.append((rng.randint(1, users), f"Seed itirafı {i}: bugün kimseye söyleyemediğim bir şey oldu.",
                          rng.choice(slugs), int(i % 5 != 0), "Seni anlıyoruz, yalnız değilsin.", empathy,
                          int(hot), _ts(t), _ts(t + timedelta(seconds=2))))
        await w.run(lambda db: db.executemany(
            "INSERT INTO confessions (author_id, content, category, anonymous, status, ai_response, empathy_count,"
            " is_popular, created_at, published_at) VALUES (?, ?, ?, ?, 'published', ?, ?, ?, ?, ?)", batch))
        done += n
        bar = "#" * (30 * done // rows)
        print(f"\r  seeding {done:>9,}/{rows:,} [{bar:<30}]", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    await w.run(lambda db: db.executemany(
        "INSERT INTO empathies (confession_id, user_id, created_at) VALUES (?, ?, ?)",
        ((cid, uid, _ts(start)) for cid, n in hot_ids for uid in rng.sample(range(1, users + 1), n))))
    out = [f"bench-token-{uid:06d}" for uid in range(1, tokens + 1)]  # 18 characters: a token's shape
    expires = _ts(datetime.now(UTC) + timedelta(days=1))
    await w.run(lambda db: db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", (
        (hashlib.sha256(token.encode()).hexdigest(), uid, _ts(start), expires) for uid, token in enumerate(out, 1))))
    await w.run(lambda db: db.execute("ANALYZE"), alone=True)
    await storage.close()
    return out
