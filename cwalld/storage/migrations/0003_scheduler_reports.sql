-- Scheduled job runs: the UNIQUE (name, scheduled_for) row is also the lock that makes each tick
-- run once across every process sharing the database.
CREATE TABLE job_runs (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    result        TEXT,
    error         TEXT,
    UNIQUE (name, scheduled_for)
);
CREATE INDEX job_runs_recent ON job_runs(name, started_at);

CREATE TABLE reports (
    confession_id INTEGER NOT NULL REFERENCES confessions(id),
    user_id       INTEGER NOT NULL REFERENCES users(id),
    reason        TEXT,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (confession_id, user_id)
) WITHOUT ROWID;

-- The popular job finds new candidates by index, not by scanning every confession.
CREATE INDEX confessions_candidates ON confessions(empathy_count) WHERE status = 'published' AND is_popular = 0;
-- Admin lists by status, newest first (partial: the feeds must keep their own indexes).
CREATE INDEX confessions_status ON confessions(status, created_at, id) WHERE status IN ('pending', 'rejected', 'hidden');
