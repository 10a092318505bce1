-- Leases: which replica does which job (a source's polls, a tenant's outbox) when several
-- `serve` processes share one database, and the replicas themselves for the status view.
-- Kept in step with ../sqlite/0008_leases.sql.

-- One row per job, kept after release so that the token never goes back: a job's token only
-- grows, whoever holds it, and a write carrying an older token is refused (fencing).
CREATE TABLE leases (
    -- `poll:<source id>`, `outbox:<tenant id>`.
    job         TEXT   PRIMARY KEY,
    -- The replica holding the lease; NULL once released.
    holder      TEXT,
    -- The fencing token of the current (or last) grant: +1 at each new grant.
    token       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL
);

CREATE INDEX leases_holder ON leases (holder);

-- The replicas that registered, with their last sign of life.
CREATE TABLE replicas (
    id           TEXT   PRIMARY KEY,
    host         TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
