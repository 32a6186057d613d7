-- Stored files: the metadata row names the blob holding the bytes. The blob is
-- written and made durable before this row commits; a blob no row names is an orphan
-- the sweeper removes once it is older than the upload TTL.
CREATE TABLE files (
    id           TEXT COLLATE "C" PRIMARY KEY,
    app_id       TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    collection   TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    checksum     TEXT NOT NULL, -- lowercase hex SHA-256
    blob_key     TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
-- Listing one collection, and all of an app's files, in creation (id) order.
CREATE INDEX files_collection ON files (app_id, collection, id);
CREATE INDEX files_app ON files (app_id, id);

CREATE TABLE files_trigger_details (
    trigger_id TEXT COLLATE "C" PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    collection TEXT COLLATE "C" NOT NULL,
    on_create  BOOLEAN NOT NULL,
    on_update  BOOLEAN NOT NULL,
    on_delete  BOOLEAN NOT NULL
);
CREATE INDEX files_trigger_details_collection ON files_trigger_details (collection);

-- A pubsub trigger's topic pattern (exact, `prefix.*` or `*`); matched in code.
CREATE TABLE pubsub_trigger_details (
    trigger_id TEXT COLLATE "C" PRIMARY KEY REFERENCES triggers(id) ON DELETE CASCADE,
    topic      TEXT COLLATE "C" NOT NULL
);
