-- Access tokens revoked by `DELETE /oauth/token/revoke/:jti` before they expire; rows are purged
-- once `expires_at` (epoch milliseconds) has passed.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
