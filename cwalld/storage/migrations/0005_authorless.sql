-- cwalld: rebuilds a table
-- A deleted account's confessions may stay on the wall with no author at all
-- ([privacy].on_account_delete = "detach"): author_id becomes nullable. SQLite changes a
-- column's constraint only by rebuilding the table: the same columns, rows, indexes.
CREATE TABLE confessions_new (
    id               INTEGER PRIMARY KEY,
    author_id        INTEGER REFERENCES users(id),
    content          TEXT NOT NULL,
    category         TEXT NOT NULL,
    anonymous        INTEGER NOT NULL DEFAULT 1,
    status           TEXT NOT NULL DEFAULT 'pending',
    ai_response      TEXT,
    ai_fallback      INTEGER NOT NULL DEFAULT 0,
    rejection_reason TEXT,
    empathy_count    INTEGER NOT NULL DEFAULT 0,
    is_popular       INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    published_at     TEXT,
    holds            INTEGER NOT NULL DEFAULT 0,
    retry_at         TEXT
);
INSERT INTO confessions_new (id, author_id, content, category, anonymous, status, ai_response, ai_fallback,
                             rejection_reason, empathy_count, is_popular, created_at, published_at, holds, retry_at)
SELECT id, author_id, content, category, anonymous, status, ai_response, ai_fallback,
       rejection_reason, empathy_count, is_popular, created_at, published_at, holds, retry_at
FROM confessions;
DROP TABLE confessions;
ALTER TABLE confessions_new RENAME TO confessions;
CREATE INDEX confessions_feed ON confessions(published_at, id) WHERE status = 'published';
CREATE INDEX confessions_category_feed ON confessions(category, published_at, id) WHERE status = 'published';
CREATE INDEX confessions_popular ON confessions(empathy_count, id) WHERE status = 'published' AND is_popular = 1;
CREATE INDEX confessions_author ON confessions(author_id, created_at, id);
CREATE INDEX confessions_pending ON confessions(created_at) WHERE status = 'pending';
CREATE INDEX confessions_candidates ON confessions(empathy_count) WHERE status = 'published' AND is_popular = 0;
CREATE INDEX confessions_status ON confessions(status, created_at, id) WHERE status IN ('pending', 'rejected', 'hidden');
