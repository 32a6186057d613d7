-- Indexes declared on document fields through the admin API. Each row is served by a
-- partial B-tree index on `docs` named `name` (`docs_ix_<hashes>`, derived from the
-- app, the collection and the field: never user text), built CONCURRENTLY after the
-- row commits; deleting a declaration, its collection or its app drops that index.
CREATE TABLE docs_indexes (
    app_id     TEXT COLLATE "C" NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    collection TEXT COLLATE "C" NOT NULL,
    field      TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app_id, collection, field)
);
