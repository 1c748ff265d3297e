-- Users, sessions, confessions, empathies, badges.
-- Timestamps are fixed-width RFC 3339 UTC text, so text order is time order.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    name          TEXT,
    image         TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

-- Only a hash of each bearer token is kept: a leaked database opens no session.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE confessions (
    id               INTEGER PRIMARY KEY,
    author_id        INTEGER NOT NULL REFERENCES users(id),
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
    published_at     TEXT
);
-- Feeds walk these backwards from a cursor: an index range scan whatever the table size.
CREATE INDEX confessions_feed ON confessions(published_at, id) WHERE status = 'published';
CREATE INDEX confessions_category_feed ON confessions(category, published_at, id) WHERE status = 'published';
CREATE INDEX confessions_popular ON confessions(empathy_count, id) WHERE status = 'published' AND is_popular = 1;
CREATE INDEX confessions_author ON confessions(author_id, created_at, id);
CREATE INDEX confessions_pending ON confessions(created_at) WHERE status = 'pending';

CREATE TABLE empathies (
    confession_id INTEGER NOT NULL REFERENCES confessions(id),
    user_id       INTEGER NOT NULL REFERENCES users(id),
    created_at    TEXT NOT NULL,
    PRIMARY KEY (confession_id, user_id)
) WITHOUT ROWID;
CREATE INDEX empathies_user ON empathies(user_id, confession_id);

-- The counter moves in the same statement as the row, so it is exact under any concurrency.
CREATE TRIGGER empathy_added AFTER INSERT ON empathies BEGIN
    UPDATE confessions SET empathy_count = empathy_count + 1 WHERE id = NEW.confession_id;
END;
CREATE TRIGGER empathy_removed AFTER DELETE ON empathies BEGIN
    UPDATE confessions SET empathy_count = empathy_count - 1 WHERE id = OLD.confession_id;
END;

CREATE TABLE badges (
    user_id    INTEGER NOT NULL REFERENCES users(id),
    code       TEXT NOT NULL,
    name       TEXT NOT NULL,
    awarded_at TEXT NOT NULL,
    PRIMARY KEY (user_id, code)
);
