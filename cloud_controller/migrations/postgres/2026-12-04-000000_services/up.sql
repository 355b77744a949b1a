-- Services: brokers (credentials stored, never returned), their catalog (offerings and plans,
-- matched across syncs by the broker's ids), plan visibilities per org, service instances
-- (managed and user-provided, with their last operation) and credential bindings (app and key).
-- A space-scoped broker and its catalog go with its space; instances must be deleted (through
-- their broker) before their space; bindings go with their app.
CREATE TABLE service_brokers (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    username TEXT NOT NULL,
    password TEXT NOT NULL,
    space_id INTEGER REFERENCES spaces(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE service_offerings (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    service_broker_id INTEGER NOT NULL REFERENCES service_brokers(id) ON DELETE CASCADE,
    broker_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    bindable BOOLEAN NOT NULL,
    plan_updateable BOOLEAN NOT NULL,
    instances_retrievable BOOLEAN NOT NULL,
    bindings_retrievable BOOLEAN NOT NULL,
    allow_context_updates BOOLEAN NOT NULL,
    tags TEXT NOT NULL,
    requires TEXT NOT NULL,
    metadata TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT service_offerings_broker_id_unique UNIQUE (service_broker_id, broker_id)
);

CREATE TABLE service_plans (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    service_offering_id INTEGER NOT NULL REFERENCES service_offerings(id) ON DELETE CASCADE,
    broker_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    free BOOLEAN NOT NULL,
    bindable BOOLEAN,
    plan_updateable BOOLEAN,
    maximum_polling_duration INTEGER,
    maintenance_info TEXT,
    schemas TEXT NOT NULL,
    metadata TEXT NOT NULL,
    public BOOLEAN NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT service_plans_broker_id_unique UNIQUE (service_offering_id, broker_id)
);

CREATE TABLE service_plan_visibilities (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    service_plan_id INTEGER NOT NULL REFERENCES service_plans(id) ON DELETE CASCADE,
    organization_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    CONSTRAINT service_plan_visibilities_unique UNIQUE (service_plan_id, organization_id)
);

CREATE TABLE service_instances (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    instance_type TEXT NOT NULL,
    space_id INTEGER NOT NULL REFERENCES spaces(id),
    service_plan_id INTEGER REFERENCES service_plans(id),
    credentials TEXT,
    syslog_drain_url TEXT,
    route_service_url TEXT,
    tags TEXT NOT NULL,
    dashboard_url TEXT,
    maintenance_info TEXT,
    last_operation_type TEXT,
    last_operation_state TEXT,
    last_operation_description TEXT,
    last_operation_created_at TEXT,
    last_operation_updated_at TEXT,
    broker_operation TEXT,
    proposed_plan_id INTEGER,
    job_guid TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT service_instances_space_name_unique UNIQUE (space_id, name)
);
CREATE INDEX service_instances_plan ON service_instances (service_plan_id);

CREATE TABLE service_credential_bindings (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    binding_type TEXT NOT NULL,
    name TEXT,
    service_instance_id INTEGER NOT NULL REFERENCES service_instances(id),
    app_id INTEGER REFERENCES apps(id) ON DELETE CASCADE,
    credentials TEXT,
    syslog_drain_url TEXT,
    volume_mounts TEXT,
    parameters TEXT,
    last_operation_type TEXT NOT NULL,
    last_operation_state TEXT NOT NULL,
    last_operation_description TEXT,
    last_operation_created_at TEXT NOT NULL,
    last_operation_updated_at TEXT NOT NULL,
    broker_operation TEXT,
    job_guid TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX service_credential_bindings_instance ON service_credential_bindings (service_instance_id);
CREATE INDEX service_credential_bindings_app ON service_credential_bindings (app_id);
CREATE UNIQUE INDEX service_credential_bindings_key_name ON service_credential_bindings (service_instance_id, name) WHERE binding_type = 'key';
