-- Ids are compared with "<" / ">" for keyset pagination and must sort bytewise, as
-- they do in SQLite, whatever the database's default collation: hence COLLATE "C" on
-- every id column (foreign keys included, so that their indexes match).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE apps (
    id         TEXT COLLATE "C" PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE scripts (
    id         TEXT COLLATE "C" PRIMARY KEY,
    app_id     TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('endpoint', 'module')),
    source     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (app_id, name)
);

CREATE TABLE routes (
    id            TEXT COLLATE "C" PRIMARY KEY,
    app_id        TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id     TEXT COLLATE "C" NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    path_key      TEXT NOT NULL,
    dispatch_mode TEXT NOT NULL CHECK (dispatch_mode IN ('sync', 'async')),
    auth          TEXT NOT NULL CHECK (auth IN ('public', 'required')),
    created_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (app_id, path_key, method)
);
CREATE INDEX routes_script ON routes (script_id);

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- No foreign key to scripts: history outlives a deleted script, until retention.
CREATE TABLE executions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    app_id      TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    script_id   TEXT COLLATE "C" NOT NULL,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    duration_ms BIGINT NOT NULL,
    logs        JSONB NOT NULL,
    error       TEXT,
    error_line  INTEGER
);
CREATE INDEX executions_app ON executions (app_id, id);
CREATE INDEX executions_started ON executions (started_at);
