-- SIEM sinks: the forwarders configured, the queue of committed changes they deliver, and
-- which queue rows each sink has delivered. Kept in step with ../postgres/0006_sinks.sql.

-- One row per configured sink (written when the config is applied). While this table is
-- empty nothing is queued, so a store without sinks pays nothing.
CREATE TABLE sinks (
    name       TEXT    PRIMARY KEY,
    -- Non-secret settings as JSON (the engine's SinkSettings).
    settings   TEXT    NOT NULL,
    -- Sealed credentials (the collector's token); opaque to the store.
    secret     BLOB,
    -- Queue rows older than the sink are not its work.
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- One row per committed change batch of a tenant: the findings an ingest stored and the
-- incidents it opened or grew, or one incident an analyst (or sync-in) changed. Written in the
-- transaction of the change, so a crash between the two is impossible.
CREATE TABLE sink_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- JSON arrays of ids.
    finding_ids  TEXT    NOT NULL,
    incident_ids TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

-- A queue row delivered (2xx) to a sink. Per row, not a cursor: on PostgreSQL ids may commit
-- out of order, and a "delivered up to id N" mark would skip a row committed later below N.
CREATE TABLE sink_deliveries (
    sink         TEXT    NOT NULL REFERENCES sinks (name) ON DELETE CASCADE,
    queue_id     INTEGER NOT NULL REFERENCES sink_queue (id) ON DELETE CASCADE,
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (sink, queue_id)
) STRICT;

CREATE INDEX sink_deliveries_by_queue ON sink_deliveries (queue_id);
