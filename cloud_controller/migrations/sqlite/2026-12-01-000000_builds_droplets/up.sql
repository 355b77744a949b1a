-- Builds stage a package into a droplet. A build is created STAGING; staging over NATS (to come)
-- moves it to STAGED with a droplet, or FAILED with an error. Droplets hold what staging
-- produced; their bits live in the blob store under droplets/<guid>. JSON columns: the
-- buildpacks list, and the process types (type -> command).
CREATE TABLE builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    guid TEXT NOT NULL UNIQUE,
    app_id INTEGER NOT NULL REFERENCES apps(id),
    package_id INTEGER NOT NULL REFERENCES packages(id),
    state TEXT NOT NULL,
    error TEXT,
    buildpacks TEXT NOT NULL,
    stack TEXT,
    staging_memory_in_mb INTEGER NOT NULL,
    staging_disk_in_mb INTEGER NOT NULL,
    droplet_guid TEXT,
    created_by_guid TEXT NOT NULL,
    created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX builds_app_id ON builds (app_id);

CREATE TABLE droplets (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    guid TEXT NOT NULL UNIQUE,
    app_id INTEGER NOT NULL REFERENCES apps(id),
    package_id INTEGER REFERENCES packages(id),
    state TEXT NOT NULL,
    error TEXT,
    buildpacks TEXT NOT NULL,
    stack TEXT,
    process_types TEXT NOT NULL,
    execution_metadata TEXT NOT NULL,
    checksum_sha256 TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX droplets_app_id ON droplets (app_id);
