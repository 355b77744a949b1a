-- Packages of apps (type bits): AWAITING_UPLOAD until their zip is in the blob store
-- (packages/<guid>), then READY with the zip's SHA-256.
CREATE TABLE packages (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    app_id INTEGER NOT NULL REFERENCES apps(id),
    package_type TEXT NOT NULL,
    state TEXT NOT NULL,
    checksum_sha256 TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX packages_app_id ON packages (app_id);
