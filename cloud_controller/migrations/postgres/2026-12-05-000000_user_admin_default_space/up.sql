-- CC's `users.admin` and `users.default_space_id`. `admin` is only stored and shown: as in CC,
-- authorization comes from token scopes, never from this column. Deleting a space clears the
-- default space of its users (CC nullifies `default_users`); the application does it, and the
-- foreign key does it too when a whole organization goes.
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN default_space_id INTEGER REFERENCES spaces(id) ON DELETE SET NULL;
CREATE INDEX users_default_space_id ON users (default_space_id);
