-- Apps (CC's apps_v3) and their processes. App names are unique within a space, compared exactly
-- as CC's (space_guid, name) unique index does. JSON columns hold the buildpack list and the
-- user-provided environment variables.
CREATE TABLE apps (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    space_id INTEGER NOT NULL REFERENCES spaces(id),
    state TEXT NOT NULL,
    lifecycle_type TEXT NOT NULL,
    buildpacks TEXT NOT NULL,
    stack TEXT,
    environment_variables TEXT NOT NULL,
    droplet_guid TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT apps_space_name_unique UNIQUE (space_id, name)
);

CREATE TABLE processes (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    app_id INTEGER NOT NULL REFERENCES apps(id),
    process_type TEXT NOT NULL,
    command TEXT,
    instances INTEGER NOT NULL,
    memory_in_mb INTEGER NOT NULL,
    disk_in_mb INTEGER NOT NULL,
    log_rate_limit BIGINT NOT NULL,
    health_check_type TEXT NOT NULL,
    health_check_endpoint TEXT,
    health_check_timeout INTEGER,
    health_check_invocation_timeout INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT processes_app_type_unique UNIQUE (app_id, process_type)
);
