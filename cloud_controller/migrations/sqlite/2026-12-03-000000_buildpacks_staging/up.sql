-- Admin buildpacks (system buildpacks zipped from system_buildpacks_dir at start); the zip lives
-- in the blob store under buildpacks/<guid>; key is the zip's SHA-256, which DEAs cache by.
-- Droplets gain droplet_hash: the SHA-1 of the droplet tarball, which DEAs cache droplets by.
CREATE TABLE buildpacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    stack TEXT,
    position INTEGER NOT NULL,
    enabled BOOLEAN NOT NULL,
    locked BOOLEAN NOT NULL,
    filename TEXT,
    key TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
ALTER TABLE droplets ADD COLUMN droplet_hash TEXT;
