-- Containment: each tenant's policy, and the actions taken on endpoints (isolate, move to a
-- triage group), recorded as intended before they are attempted.
-- Kept in step with ../postgres/0003_containment.sql.

-- The tenant's containment policy as JSON (model::ContainmentPolicy); NULL: none.
ALTER TABLE tenants ADD COLUMN containment TEXT;

CREATE TABLE actions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    -- The Secure Endpoint source that acts (its name, within the tenant).
    source        TEXT    NOT NULL,
    -- isolate | move
    kind          TEXT    NOT NULL,
    -- The computer's connector GUID, and its hostname.
    target        TEXT    NOT NULL,
    target_label  TEXT,
    -- planned | applied | failed | reverted | skipped
    state         TEXT    NOT NULL,
    reason        TEXT,
    -- Move: the triage group's name, its GUID once found, and the group the computer was in
    -- before the move (recorded before the move is attempted, so the revert restores it).
    group_name    TEXT,
    group_guid    TEXT,
    previous_group_guid TEXT,
    -- Isolate: the unlock code, sealed with the master key; and whether the computer was
    -- already isolated before socbridge acted (then the revert leaves it be).
    unlock_code   BLOB,
    preexisting   INTEGER NOT NULL DEFAULT 0,
    revert_on_close INTEGER NOT NULL,
    manual        INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- One action of a kind per incident and computer: re-planning finds it.
    UNIQUE (incident_id, kind, target)
) STRICT;

CREATE INDEX actions_by_incident ON actions (incident_id, id);
