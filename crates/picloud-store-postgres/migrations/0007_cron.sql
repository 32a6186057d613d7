-- Cron triggers. `next_fire_at` is the window the scheduler waits for (NULL: the
-- schedule has no more); firing moves it on with a compare-and-set in the transaction
-- that queues the delivery, so one window can never be fired twice, even by two nodes.
CREATE TABLE cron_trigger_details (
    trigger_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    schedule      TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    next_fire_at  TIMESTAMPTZ,
    last_fired_at TIMESTAMPTZ
);
-- The scheduler's "what is due" and "when is the next one".
CREATE INDEX cron_trigger_details_next ON cron_trigger_details (next_fire_at);
