-- The admin service's own tables, in its schema `admin`, beside the seed's tables (which stay
-- exactly the legacy contract).

-- The audit log's hash chain: one entry per audit row admin writes, in the order it wrote them.
-- hash = sha256(previous entry's hash || the row's canonical form). An anchor entry covers a block
-- of rows admin did not write itself: the first one, the rows that were there before admin first
-- started (migrated legacy rows); later ones, rows an operator anchored with `mfe admin
-- anchor-audit` (rows the migration brought in after that start). Its hash covers the digest of
-- every row of its block in `admin.audit_anchor`, in position order.
CREATE TABLE admin.audit_chain (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('anchor', 'row')),
    -- The audited row (kind 'row'); NULL for the anchor.
    audit_id TEXT UNIQUE,
    -- How many rows an anchor covers (kind 'anchor').
    anchored_rows BIGINT,
    hash BYTEA NOT NULL,
    chained_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'row') = (audit_id IS NOT NULL))
);

-- The rows each anchor covers, each with the sha256 of its canonical form when it was anchored.
CREATE TABLE admin.audit_anchor (
    audit_id TEXT PRIMARY KEY,
    anchor_seq BIGINT NOT NULL,
    position BIGINT NOT NULL,
    digest BYTEA NOT NULL,
    UNIQUE (anchor_seq, position)
);

-- The chain's newest entry. Appending locks this one row, so appends are serialised across
-- replicas, and a tail cut off the chain (newest rows and their entries deleted) no longer
-- matches it.
CREATE TABLE admin.audit_chain_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

-- Filters of GET /admin/audit-logs the seed's indexes do not serve: a resource's history, and a
-- substring of the details (trigram index; pg_trgm is a trusted extension, so the database's
-- owner may create it).
CREATE INDEX IF NOT EXISTS "audit_logs_resource_idx" ON "audit_logs"("resource_id", "resource_type");
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS "audit_logs_details_trgm_idx" ON "audit_logs" USING gin (("details"::text) gin_trgm_ops);
