DROP INDEX users_default_space_id;
ALTER TABLE users DROP COLUMN default_space_id;
ALTER TABLE users DROP COLUMN admin;
