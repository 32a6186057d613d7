-- KV keys and collections are COLLATE "C" like the ids: listings and prefix ranges
-- must follow code-point order, as SQLite's binary comparison does.
CREATE TABLE kv_entries (
    app_id     TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    collection TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, collection, key)
);

-- One row per trigger; what a kind matches on lives in its detail table.
CREATE TABLE triggers (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    app_id              TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id           TEXT COLLATE "C" NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('kv', 'dead_letter')),
    enabled             BOOLEAN NOT NULL DEFAULT TRUE,
    retry_max_attempts  INTEGER,
    retry_base_delay_ms BIGINT,
    retry_max_delay_ms  BIGINT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    -- A policy is all three values or none (the instance defaults).
    CHECK ((retry_max_attempts IS NULL) = (retry_base_delay_ms IS NULL)
       AND (retry_max_attempts IS NULL) = (retry_max_delay_ms IS NULL))
);
CREATE INDEX triggers_app ON triggers (app_id, kind);
CREATE INDEX triggers_script ON triggers (script_id);

CREATE TABLE kv_trigger_details (
    trigger_id TEXT COLLATE "C" PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    collection TEXT COLLATE "C" NOT NULL,
    on_set     BOOLEAN NOT NULL,
    on_delete  BOOLEAN NOT NULL
);
CREATE INDEX kv_trigger_details_collection ON kv_trigger_details (collection);

-- The transactional outbox: one row per delivery (an event for one trigger, or an
-- async route call). Its id is the event id the handler sees, stable across retries.
-- script_id comes before trigger_id so that the foreign-key checks of an insert lock
-- app, script, trigger in the order writers and deletes take them.
CREATE TABLE outbox (
    id            TEXT COLLATE "C" PRIMARY KEY,
    app_id        TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id     TEXT COLLATE "C" NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    trigger_id    TEXT COLLATE "C" REFERENCES triggers(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    payload       JSONB NOT NULL,
    attempt       INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    base_delay_ms BIGINT NOT NULL,
    max_delay_ms  BIGINT NOT NULL,
    depth         INTEGER NOT NULL,
    due_at        TIMESTAMPTZ NOT NULL,
    claimed_until TIMESTAMPTZ,
    lease_version BIGINT NOT NULL DEFAULT 0,
    replay_of     TEXT COLLATE "C",
    created_at    TIMESTAMPTZ NOT NULL
);
-- Claims scan due_at order (expired leases included); the partial index answers
-- "when is the next unclaimed delivery due" without walking the in-flight ones.
CREATE INDEX outbox_due ON outbox (due_at);
CREATE INDEX outbox_unclaimed_due ON outbox (due_at) WHERE claimed_until IS NULL;
CREATE INDEX outbox_app ON outbox (app_id);
CREATE INDEX outbox_trigger ON outbox (trigger_id);
CREATE INDEX outbox_script ON outbox (script_id);

-- No foreign key to triggers or scripts: a dead letter outlives what produced it.
CREATE TABLE dead_letters (
    id         TEXT COLLATE "C" PRIMARY KEY,
    app_id     TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    event_id   TEXT COLLATE "C" NOT NULL,
    trigger_id TEXT COLLATE "C",
    script_id  TEXT COLLATE "C" NOT NULL,
    source     TEXT NOT NULL,
    payload    JSONB NOT NULL,
    error      TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    depth      INTEGER NOT NULL,
    resolution TEXT CHECK (resolution IN ('resolved', 'replayed', 'handler_failed')),
    replay_of  TEXT COLLATE "C",
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dead_letters_app ON dead_letters (app_id, id);

CREATE TABLE abandoned_executions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    app_id       TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id    TEXT COLLATE "C" NOT NULL,
    execution_id TEXT COLLATE "C" NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    abandoned_at TIMESTAMPTZ NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX abandoned_executions_app ON abandoned_executions (app_id, id);
