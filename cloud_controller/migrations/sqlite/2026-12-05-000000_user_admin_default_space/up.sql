-- CC's `users.admin` and `users.default_space_id`. `admin` is only stored and shown: as in CC,
-- authorization comes from token scopes, never from this column. Deleting a space clears the
-- default space of its users (CC nullifies `default_users`); the application does it, and the
-- trigger does it too when a whole organization goes. (A foreign key would do the same, but
-- SQLite cannot drop a column that is part of one, so `down.sql` could not undo it.)
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN default_space_id INTEGER;
CREATE INDEX users_default_space_id ON users (default_space_id);
CREATE TRIGGER users_clear_deleted_default_space AFTER DELETE ON spaces
BEGIN
    UPDATE users SET default_space_id = NULL WHERE default_space_id = OLD.id;
END;
