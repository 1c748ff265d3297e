-- A confession held for moderation ([moderation].on_unavailable = "hold") stays pending; the
-- recovery job tries it again at retry_at, later each time (holds counts the tries).
ALTER TABLE confessions ADD COLUMN holds integer NOT NULL DEFAULT 0;
ALTER TABLE confessions ADD COLUMN retry_at text COLLATE "C";
