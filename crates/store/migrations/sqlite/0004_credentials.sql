-- Credentials shared by several sources: an MSSP's parent API key (Cisco Umbrella) acts for
-- many customers' orgs, and its secret is stored once.
-- Kept in step with ../postgres/0004_credentials.sql.

CREATE TABLE credentials (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL,
    -- Non-secret settings as JSON (the engine's CredentialSettings).
    settings   TEXT    NOT NULL,
    -- Sealed secrets; opaque to the store.
    secret     BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
