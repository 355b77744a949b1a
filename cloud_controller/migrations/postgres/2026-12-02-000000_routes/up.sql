-- HTTP routes (host + domain + path, unique together; empty strings for no host or path) and
-- their destinations (an app's process, port 8080, http1).
CREATE TABLE routes (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    domain_id INTEGER NOT NULL REFERENCES domains(id),
    space_id INTEGER NOT NULL REFERENCES spaces(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT routes_domain_host_path_unique UNIQUE (domain_id, host, path)
);

CREATE TABLE route_destinations (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    route_id INTEGER NOT NULL REFERENCES routes(id),
    app_id INTEGER NOT NULL REFERENCES apps(id),
    process_type TEXT NOT NULL,
    port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT route_destinations_unique UNIQUE (route_id, app_id, process_type, port)
);
