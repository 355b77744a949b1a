DROP TABLE signing_keys;
DROP TABLE refresh_tokens;
DROP TABLE oauth_clients;
DROP TABLE group_memberships;
DROP TABLE scim_groups;
DROP TABLE users;
