-- A session is live only while it carries its user's current epoch. A disable or a
-- new password bumps the epoch, so no session issued before it (nor one whose login
-- checked the credentials before it) can come back when the user is enabled again.
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
-- Users disabled before this version kept their sessions: end them now.
UPDATE users SET session_epoch = 1 WHERE disabled;
DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE disabled);
