-- The profile service's own tables, in its schema `profile`, away from the legacy tables.

-- Events written in the same transaction as the change that caused them (transactional outbox);
-- the event hub's relay publishes and marks them.
CREATE TABLE profile.outbox (
    id UUID PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    event_type TEXT NOT NULL,
    payload JSONB NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished_idx ON profile.outbox(seq) WHERE published_at IS NULL;

-- Ids of the events this service has applied, recorded in the same transaction as their effect,
-- so that a redelivered or duplicated event changes nothing.
CREATE TABLE profile.processed_events (
    event_id UUID PRIMARY KEY,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
