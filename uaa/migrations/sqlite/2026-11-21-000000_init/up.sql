-- UAA schema. Timestamps are UTC milliseconds since the Unix epoch (BIGINT).
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL,
    origin TEXT NOT NULL,
    email TEXT NOT NULL,
    given_name TEXT,
    family_name TEXT,
    password_hash TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    verified BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created BIGINT NOT NULL,
    last_modified BIGINT NOT NULL,
    password_last_modified BIGINT NOT NULL,
    last_logon BIGINT,
    previous_logon BIGINT
);
CREATE UNIQUE INDEX users_user_name_origin ON users (user_name_key, origin);

CREATE TABLE scim_groups (
    id TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    version BIGINT NOT NULL,
    created BIGINT NOT NULL,
    last_modified BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_display_name ON scim_groups (display_name);

CREATE TABLE group_memberships (
    group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    origin TEXT NOT NULL,
    added BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_memberships_member ON group_memberships (member_id);

CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    secret_hash TEXT NOT NULL,
    authorized_grant_types TEXT NOT NULL,
    scope TEXT NOT NULL,
    authorities TEXT NOT NULL,
    access_token_validity_secs BIGINT,
    refresh_token_validity_secs BIGINT,
    last_modified BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    access_jti TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_access_jti ON refresh_tokens (access_jti);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    private_key_pem TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created BIGINT NOT NULL
);
