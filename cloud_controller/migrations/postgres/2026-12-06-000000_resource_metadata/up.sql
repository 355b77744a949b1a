-- Metadata (labels and annotations) of v3 resources, one generic pair of tables keyed by the
-- resource's type ('organization', 'space', 'app', …) and GUID. A key without a prefix stores
-- the empty string as its prefix, so the unique constraint covers it too.
CREATE TABLE resource_labels (
    id SERIAL PRIMARY KEY,
    resource_type TEXT NOT NULL,
    resource_guid TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_name TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (resource_type, resource_guid, key_prefix, key_name)
);

CREATE TABLE resource_annotations (
    id SERIAL PRIMARY KEY,
    resource_type TEXT NOT NULL,
    resource_guid TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_name TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (resource_type, resource_guid, key_prefix, key_name)
);
