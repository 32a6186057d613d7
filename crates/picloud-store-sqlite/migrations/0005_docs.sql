-- Rebuilds `triggers`; runs with foreign keys off (see `SqliteStore::migrate`) so that
-- dropping the old table does not cascade into the trigger details and the outbox.

-- `kind` loses its CHECK: the list of kinds lives in the code, and SQLite cannot alter
-- a CHECK without rebuilding the table each time a kind arrives.
CREATE TABLE triggers_rebuilt (
    id                  TEXT PRIMARY KEY,
    app_id              TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id           TEXT NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    kind                TEXT NOT NULL,
    enabled             INTEGER NOT NULL DEFAULT 1,
    retry_max_attempts  INTEGER,
    retry_base_delay_ms INTEGER,
    retry_max_delay_ms  INTEGER,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
INSERT INTO triggers_rebuilt SELECT id, app_id, script_id, kind, enabled, retry_max_attempts,
    retry_base_delay_ms, retry_max_delay_ms, created_at, updated_at FROM triggers;
DROP TABLE triggers;
ALTER TABLE triggers_rebuilt RENAME TO triggers;
CREATE INDEX triggers_app ON triggers (app_id, kind);
CREATE INDEX triggers_script ON triggers (script_id);

CREATE TABLE docs (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    data       BLOB NOT NULL, -- SQLite JSONB: read without re-parsing; keys sorted
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX docs_collection ON docs (app_id, collection, id);

CREATE TABLE docs_trigger_details (
    trigger_id TEXT PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    on_create  INTEGER NOT NULL,
    on_update  INTEGER NOT NULL,
    on_delete  INTEGER NOT NULL
);
CREATE INDEX docs_trigger_details_collection ON docs_trigger_details (collection);

