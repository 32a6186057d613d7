CREATE TABLE kv_entries (
    app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL, -- JSON
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (app_id, collection, key)
);

-- One row per trigger; what a kind matches on lives in its detail table.
CREATE TABLE triggers (
    id                  TEXT PRIMARY KEY,
    app_id              TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id           TEXT NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('kv', 'dead_letter')),
    enabled             INTEGER NOT NULL DEFAULT 1,
    retry_max_attempts  INTEGER,
    retry_base_delay_ms INTEGER,
    retry_max_delay_ms  INTEGER,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX triggers_app ON triggers (app_id, kind);
CREATE INDEX triggers_script ON triggers (script_id);

CREATE TABLE kv_trigger_details (
    trigger_id TEXT PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    on_set     INTEGER NOT NULL,
    on_delete  INTEGER NOT NULL
);
CREATE INDEX kv_trigger_details_collection ON kv_trigger_details (collection);

-- The transactional outbox: one row per delivery (an event for one trigger, or an
-- async route call). Its id is the event id the handler sees, stable across retries.
CREATE TABLE outbox (
    id            TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    trigger_id    TEXT REFERENCES triggers(id) ON DELETE CASCADE,
    script_id     TEXT NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    payload       TEXT NOT NULL, -- JSON
    attempt       INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    base_delay_ms INTEGER NOT NULL,
    max_delay_ms  INTEGER NOT NULL,
    depth         INTEGER NOT NULL,
    due_at        TEXT NOT NULL,
    claimed_until TEXT,
    lease_version INTEGER NOT NULL DEFAULT 0,
    replay_of     TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (due_at);
CREATE INDEX outbox_app ON outbox (app_id);
CREATE INDEX outbox_trigger ON outbox (trigger_id);
CREATE INDEX outbox_script ON outbox (script_id);

-- No foreign key to triggers or scripts: a dead letter outlives what produced it.
CREATE TABLE dead_letters (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    event_id   TEXT NOT NULL,
    trigger_id TEXT,
    script_id  TEXT NOT NULL,
    source     TEXT NOT NULL,
    payload    TEXT NOT NULL, -- JSON
    error      TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    depth      INTEGER NOT NULL,
    resolution TEXT CHECK (resolution IN ('resolved', 'replayed', 'handler_failed')),
    replay_of  TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX dead_letters_app ON dead_letters (app_id, id);

CREATE TABLE abandoned_executions (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id    TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    abandoned_at TEXT NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX abandoned_executions_app ON abandoned_executions (app_id, id);
