-- Cron triggers. `next_fire_at` is the window the scheduler waits for (NULL: the
-- schedule has no more); firing moves it on with a compare-and-set in the transaction
-- that queues the delivery, so one window can never be fired twice.
CREATE TABLE cron_trigger_details (
    trigger_id    TEXT PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    schedule      TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    next_fire_at  TEXT,
    last_fired_at TEXT
);
-- The scheduler's "what is due" and "when is the next one".
CREATE INDEX cron_trigger_details_next ON cron_trigger_details (next_fire_at);
