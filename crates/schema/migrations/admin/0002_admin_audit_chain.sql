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

-- A resource's history (GET /admin/audit-logs?resourceType=&resourceId=), which the seed's
-- indexes do not serve. No trigram index for `q`: on 500k rows it takes about 14 s of CPU to build
-- against 0.4 s for a B-tree, every migration copy would pay it, and every audited event would
-- update it; `q` scans the rows the other filters leave.
CREATE INDEX IF NOT EXISTS "audit_logs_resource_idx" ON "audit_logs"("resource_id", "resource_type");
