-- The optional Cisco XDR incident sink: per-tenant settings, and the XDR incident of each
-- socbridge incident.
-- Kept in step with ../sqlite/0007_xdr.sql.

-- This store's identity, part of every XDR external id so that two socbridge stores feeding
-- one XDR organisation never take each other's incidents. Made once, at migration time.
CREATE TABLE installation (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    install_id TEXT   NOT NULL
);
INSERT INTO installation (id, install_id)
VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16));

-- A tenant's XDR sink; no row: the sink is off for that tenant.
CREATE TABLE xdr_sinks (
    tenant_id  BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Non-secret settings as JSON (the engine's XdrSettings).
    settings   TEXT   NOT NULL,
    -- Sealed client secret; opaque to the store.
    secret     BYTEA,
    updated_at BIGINT NOT NULL
);

-- One XDR incident per socbridge incident, looked up by its external id before it is made.
CREATE TABLE xdr_incidents (
    incident_id BIGINT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id TEXT   NOT NULL UNIQUE,
    -- The CTIA id (a URL); NULL until created or adopted.
    xdr_id      TEXT   UNIQUE,
    -- The status last written or read back.
    status      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
