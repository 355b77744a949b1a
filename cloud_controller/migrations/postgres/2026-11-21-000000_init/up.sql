CREATE TABLE quota_definitions (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    non_basic_services_allowed BOOLEAN NOT NULL,
    total_services INTEGER NOT NULL,
    total_routes INTEGER NOT NULL,
    memory_limit INTEGER NOT NULL,
    instance_memory_limit INTEGER NOT NULL,
    app_instance_limit INTEGER NOT NULL,
    app_task_limit INTEGER NOT NULL,
    total_service_keys INTEGER NOT NULL,
    total_reserved_route_ports INTEGER NOT NULL,
    total_private_domains INTEGER NOT NULL,
    log_rate_limit BIGINT NOT NULL
);

CREATE TABLE organizations (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    suspended BOOLEAN NOT NULL,
    billing_enabled BOOLEAN NOT NULL,
    quota_definition_id INTEGER NOT NULL REFERENCES quota_definitions(id),
    default_isolation_segment_guid TEXT
);

CREATE TABLE spaces (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    organization_id INTEGER NOT NULL REFERENCES organizations(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    allow_ssh BOOLEAN NOT NULL,
    CONSTRAINT spaces_org_name_unique UNIQUE (organization_id, name)
);

CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    username TEXT,
    origin TEXT,
    is_client BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE roles (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    role_type TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    organization_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    space_id INTEGER REFERENCES spaces(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX roles_org_role_unique ON roles (user_id, role_type, organization_id) WHERE space_id IS NULL;
CREATE UNIQUE INDEX roles_space_role_unique ON roles (user_id, role_type, space_id) WHERE space_id IS NOT NULL;
CREATE INDEX roles_organization_id ON roles (organization_id);
CREATE INDEX roles_space_id ON roles (space_id);

CREATE TABLE feature_flags (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL,
    error_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE stacks (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE domains (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    internal BOOLEAN NOT NULL,
    owning_organization_id INTEGER REFERENCES organizations(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE jobs (
    id SERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    operation TEXT NOT NULL,
    state TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_guid TEXT NOT NULL,
    errors TEXT NOT NULL,
    warnings TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
