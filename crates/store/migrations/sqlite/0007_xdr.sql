-- The optional Cisco XDR incident sink: per-tenant settings, and the XDR incident of each
-- socbridge incident.
-- Kept in step with ../postgres/0007_xdr.sql.

-- This store's identity, part of every XDR external id so that two socbridge stores feeding
-- one XDR organisation never take each other's incidents. Made once, at migration time.
CREATE TABLE installation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    install_id TEXT    NOT NULL
) STRICT;
INSERT INTO installation (id, install_id) VALUES (1, lower(hex(randomblob(8))));

-- A tenant's XDR sink; no row: the sink is off for that tenant.
CREATE TABLE xdr_sinks (
    tenant_id  INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Non-secret settings as JSON (the engine's XdrSettings).
    settings   TEXT    NOT NULL,
    -- Sealed client secret; opaque to the store.
    secret     BLOB,
    updated_at INTEGER NOT NULL
) STRICT;

-- One XDR incident per socbridge incident, looked up by its external id before it is made.
CREATE TABLE xdr_incidents (
    incident_id INTEGER PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id TEXT    NOT NULL UNIQUE,
    -- The CTIA id (a URL); NULL until created or adopted.
    xdr_id      TEXT    UNIQUE,
    -- The status last written or read back.
    status      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
