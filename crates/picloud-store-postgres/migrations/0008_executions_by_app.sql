-- Every run writes one execution record, and every read names its app: key the table
-- by (app_id, id) and drop the separate (app_id, id) index, so a write maintains one
-- index instead of two. Retention walks each app's range of this key.
ALTER TABLE executions DROP CONSTRAINT executions_pkey;
ALTER TABLE executions ADD PRIMARY KEY (app_id, id);
DROP INDEX executions_app;
