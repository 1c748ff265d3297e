-- Deployment-wide values every process must agree on (e.g. the secret that keys per-user cache entries).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
