-- Envelope encryption: values are sealed under data keys, data keys are wrapped by
-- the master key. A row holds the wrapping of the key the data is under now and a
-- spare slot a rotation fills with the new key's wrapping before swapping the two.
CREATE TABLE data_keys (
    id                  TEXT PRIMARY KEY,
    app_id              TEXT REFERENCES apps(id) ON DELETE CASCADE, -- NULL: instance-wide
    purpose             TEXT NOT NULL,
    master_key_id       TEXT NOT NULL,
    wrap_nonce          BLOB NOT NULL,
    wrapped_key         BLOB NOT NULL,
    spare_master_key_id TEXT,
    spare_wrap_nonce    BLOB,
    spare_wrapped_key   BLOB,
    uses                INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL
);
CREATE INDEX data_keys_owner ON data_keys (app_id, purpose, created_at);

-- App secrets: only ciphertext, bound (associated data) to app, name and data key.
CREATE TABLE app_secrets (
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    data_key_id TEXT NOT NULL REFERENCES data_keys(id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (app_id, name)
);
