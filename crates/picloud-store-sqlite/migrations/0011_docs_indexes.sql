-- Indexes declared on document fields through the admin API. Each row is served by a
-- partial expression index on `docs` named `name` (`docs_ix_<hashes>`, derived from
-- the app, the collection and the field: never user text). Deleting a declaration,
-- its collection or its app drops that index in the same transaction.
CREATE TABLE docs_indexes (
    app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    field      TEXT NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app_id, collection, field)
);
