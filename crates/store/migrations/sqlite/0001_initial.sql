-- socbridge's schema on SQLite. Kept in step with ../postgres/0001_initial.sql: the same
-- tables, columns, keys and indexes; only the type names and id generation differ.
--
-- Conventions (both backends): every integer is 64-bit; times are microseconds since the Unix
-- epoch, UTC (model::Timestamp); severities are their rank 1..5; no booleans and no native
-- time types, so one SQL text serves both backends through sqlx's Any driver.
-- STRICT tables make SQLite refuse a value of the wrong type instead of storing it anyway.
-- AUTOINCREMENT keeps ids from being reused after a tenant is removed: incident ids end up in
-- ticket correlation ids and must never point at a different incident later.

CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    display_name TEXT,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE sources (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    -- The source's settings as JSON text (the engine's SourceSettings).
    settings     TEXT    NOT NULL,
    -- Sealed credentials (AEAD ciphertext); opaque to the store.
    secret       BLOB,
    -- The high-water mark: newest vendor time stored. Moves only with what it covers.
    cursor_mark  INTEGER,
    last_poll_at INTEGER,
    last_ok_at   INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title           TEXT    NOT NULL,
    severity        INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    resolution      TEXT,
    assignee        TEXT,
    -- The subject the incident groups (model::correlation_key), for its whole life.
    correlation_key TEXT    NOT NULL,
    -- correlation_key while the incident is open, NULL once resolved or closed: the unique
    -- key below then allows at most one open incident per subject (NULLs are distinct).
    open_key        TEXT,
    finding_count   INTEGER NOT NULL DEFAULT 0,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    closed_at       INTEGER,
    UNIQUE (tenant_id, open_key)
) STRICT;

-- list_incidents: newest activity first, overall and per tenant.
CREATE INDEX incidents_by_updated ON incidents (updated_at DESC, id DESC);
CREATE INDEX incidents_by_tenant_updated ON incidents (tenant_id, updated_at DESC, id DESC);
-- ingest: the latest incident of a subject (GroupBy::SubjectForever).
CREATE INDEX incidents_by_correlation ON incidents (tenant_id, correlation_key, id);

CREATE TABLE findings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_id   INTEGER NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    incident_id INTEGER REFERENCES incidents (id) ON DELETE SET NULL,
    source_kind TEXT    NOT NULL,
    vendor_key  TEXT    NOT NULL,
    observed_at INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL,
    severity    INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    -- `kind:id` of the finding's subject, when it has one.
    subject_key TEXT,
    -- JSON array of {type, value}.
    observables TEXT    NOT NULL,
    -- The vendor's record as received.
    raw         TEXT    NOT NULL,
    -- Deduplication: a vendor record is stored once per tenant and source.
    UNIQUE (tenant_id, source_id, vendor_key)
) STRICT;

CREATE INDEX findings_by_incident ON findings (incident_id, observed_at);
CREATE INDEX findings_by_source ON findings (source_id);

CREATE TABLE incident_observables (
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    PRIMARY KEY (incident_id, kind, value)
) STRICT;

-- list_incidents --source-ip: incidents holding an observable.
CREATE INDEX incident_observables_by_value ON incident_observables (kind, value);

CREATE TABLE incident_sources (
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    source_kind TEXT    NOT NULL,
    PRIMARY KEY (incident_id, source_kind)
) STRICT;

-- The timeline of an incident.
CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    detail      TEXT    NOT NULL
) STRICT;

CREATE INDEX incident_events_by_incident ON incident_events (incident_id, at, id);

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source_id   INTEGER NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    -- Hex SHA-256 of `raw`: the same bad record read twice is kept once.
    record_hash TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    raw         BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (tenant_id, source_id, record_hash)
) STRICT;

-- Removing a source cascades here.
CREATE INDEX quarantine_by_source ON quarantine (source_id);
