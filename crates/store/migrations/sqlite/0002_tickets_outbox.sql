-- Ticketing: the ServiceNow link of each incident, the outbox of work for ServiceNow (and,
-- later, vendors and containment), and what sync-in has already taken from ServiceNow.
-- Kept in step with ../postgres/0002_tickets_outbox.sql.

-- The ticketing system of the installation (one ServiceNow instance serves every tenant).
CREATE TABLE ticketing (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    system     TEXT    NOT NULL,
    -- Non-secret settings as JSON (the engine's TicketingSettings).
    settings   TEXT    NOT NULL,
    -- Sealed credentials; opaque to the store.
    secret     BLOB,
    -- Sync-in polling: the newest sys_updated_on taken in (micros). Moves only with what it
    -- covers.
    sync_mark  INTEGER,
    last_sync_at INTEGER,
    last_error TEXT,
    updated_at INTEGER NOT NULL
) STRICT;

-- One ticket per incident, one incident per ticket: both enforced here.
CREATE TABLE tickets (
    incident_id       INTEGER PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    tenant_id         INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    system            TEXT    NOT NULL,
    correlation_id    TEXT    NOT NULL UNIQUE,
    -- NULL until the ticket is created or adopted.
    sys_id            TEXT    UNIQUE,
    number            TEXT,
    state             TEXT,
    url               TEXT,
    -- The ticket's sys_updated_on as last read or written by socbridge (micros).
    remote_updated_on INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

-- Journal entries (work notes, comments) of a ticket already taken in or written by
-- socbridge: a note flows once.
CREATE TABLE ticket_journal_seen (
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    entry_id    TEXT    NOT NULL,
    PRIMARY KEY (incident_id, entry_id)
) STRICT;

-- Work for the outside world, written in the transaction of the change that calls for it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    -- `servicenow`, later `vendor`, `containment`.
    target          TEXT    NOT NULL,
    -- create | update | note | close | reopen | writeback
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    -- pending | done | failed
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    done_at         INTEGER
) STRICT;

CREATE INDEX outbox_by_state ON outbox (state, tenant_id, id);
CREATE INDEX outbox_by_incident ON outbox (incident_id, id);
