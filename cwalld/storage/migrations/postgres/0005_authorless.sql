-- A deleted account's confessions may stay on the wall with no author at all
-- ([privacy].on_account_delete = "detach"): author_id becomes nullable (in place here; SQLite
-- rebuilds its table for the same change).
ALTER TABLE confessions ALTER COLUMN author_id DROP NOT NULL;
