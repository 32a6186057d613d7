CREATE TABLE app_members (
    app_id     TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_members_user ON app_members (user_id);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scopes       TEXT[] NOT NULL,
    app_id       TEXT COLLATE "C" REFERENCES apps(id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);
CREATE INDEX api_keys_app ON api_keys (app_id);

-- No foreign keys: the audit trail outlives the users, keys and apps it names.
CREATE TABLE audit_log (
    id      TEXT COLLATE "C" PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    user_id TEXT,
    key_id  TEXT,
    action  TEXT NOT NULL,
    app_id  TEXT COLLATE "C",
    target  TEXT,
    ip      TEXT,
    status  INTEGER NOT NULL
);
CREATE INDEX audit_app ON audit_log (app_id, id);
