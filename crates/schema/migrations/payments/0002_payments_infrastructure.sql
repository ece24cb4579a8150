-- The payments service's own tables, in its schema `payments`, beside the seed's tables (which
-- stay exactly the legacy contract). No foreign keys to `payments`: the migration tool reloads that
-- table, and a job outliving its payment is harmless (the worker drops it).

-- Work the background worker owes a payment: charge it (instant, scheduled, a recurring
-- occurrence), create the next occurrence of a recurring payment, or reconcile an outcome the
-- provider did not give. One row per payment; replicas take rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE payments.jobs (
    payment_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'occurrence', 'reconcile')),
    due_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX jobs_due_at_idx ON payments.jobs (due_at);

-- When a scheduled payment is due, and how a recurring one repeats. The seed's table has no
-- column for either.
CREATE TABLE payments.schedules (
    payment_id TEXT PRIMARY KEY,
    scheduled_at TIMESTAMPTZ NOT NULL,
    "interval" TEXT CHECK ("interval" IN ('day', 'week', 'month')),
    occurrences INTEGER NOT NULL DEFAULT 0
);

-- Idempotency-Key (Stripe's semantics): a key belongs to one caller; while `owner` holds it
-- (until `locked_until`) a retry is refused; once completed, the stored response is replayed for
-- 24 hours. `fingerprint` is a hash of the method, the path and the canonical body.
CREATE TABLE payments.idempotency_keys (
    caller TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    owner UUID,
    locked_until TIMESTAMPTZ,
    response_status SMALLINT,
    response_body JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON payments.idempotency_keys (created_at);
