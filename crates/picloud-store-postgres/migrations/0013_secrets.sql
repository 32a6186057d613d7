-- Envelope encryption: values are sealed under data keys, data keys are wrapped by
-- the master key. A row holds the wrapping of the key the data is under now and a
-- spare slot a rotation fills with the new key's wrapping before swapping the two.
CREATE TABLE data_keys (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    app_id              TEXT COLLATE "C" REFERENCES apps(id) ON DELETE CASCADE, -- NULL: instance-wide
    purpose             TEXT NOT NULL,
    master_key_id       TEXT NOT NULL,
    wrap_nonce          BYTEA NOT NULL,
    wrapped_key         BYTEA NOT NULL,
    spare_master_key_id TEXT,
    spare_wrap_nonce    BYTEA,
    spare_wrapped_key   BYTEA,
    uses                BIGINT NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX data_keys_owner ON data_keys (app_id, purpose, created_at);

-- App secrets: only ciphertext, bound (associated data) to app, name and data key.
CREATE TABLE app_secrets (
    app_id      TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    data_key_id TEXT COLLATE "C" NOT NULL REFERENCES data_keys(id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, name)
);
