-- Which modules each script imports, written with the script in one transaction.
-- Keyed by module *name*: an import names a module, and a module may only be deleted
-- or renamed while nothing imports it, so every row points at an existing module.
CREATE TABLE script_imports (
    script_id   TEXT NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    module_name TEXT NOT NULL,
    PRIMARY KEY (script_id, module_name)
) WITHOUT ROWID;

CREATE INDEX script_imports_by_module ON script_imports (app_id, module_name);
