DROP TRIGGER users_clear_deleted_default_space;
DROP INDEX users_default_space_id;
ALTER TABLE users DROP COLUMN default_space_id;
ALTER TABLE users DROP COLUMN admin;
