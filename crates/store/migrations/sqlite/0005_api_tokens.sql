-- Bearer tokens of the HTTP API: a role and, for analysts, the tenants they may see. Only the
-- SHA-256 of a token is kept (the token itself is shown once, at creation).
-- Kept in step with ../postgres/0005_api_tokens.sql.

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Hex SHA-256 of the whole token: looked up by hash, never compared as text.
    token_hash   TEXT    NOT NULL UNIQUE,
    -- The token's first characters, to recognise it in `token list`.
    prefix       TEXT    NOT NULL,
    label        TEXT,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'analyst')),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) STRICT;

-- An analyst token's tenants. Removing a tenant removes it from every scope.
CREATE TABLE api_token_tenants (
    token_id  INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, tenant_id)
) STRICT;
