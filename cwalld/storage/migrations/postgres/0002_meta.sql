-- Deployment-wide values every process must agree on (e.g. the secret that keys per-user cache entries).
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
