-- The dispatcher claims each app's oldest due deliveries in turns across apps: it
-- walks the apps with queued rows and reads each one's oldest, by this index.
CREATE INDEX outbox_app_due ON outbox (app_id, due_at);
DROP INDEX outbox_app;
