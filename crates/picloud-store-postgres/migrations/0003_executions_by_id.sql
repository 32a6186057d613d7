-- Retention now deletes by id: ids are minted at the start of a run and sort by time,
-- so the primary key is the time index and this one only slowed every insert.
DROP INDEX executions_started;
