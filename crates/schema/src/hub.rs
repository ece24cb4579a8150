//! The hub's tables in a service's database, defined here once, beside the code that reads and
//! writes them:
//! - `<schema>.outbox`: the events a service publishes, written in the transaction of the change;
//! - `<schema>.processed_events`: the inbox, the ids of the events it has applied.
//!
//! A service applies them as migrations of its own history ([`with_hub_tables`]), so
//! `mfe migrate prepare`, the service at start and the schema tests all run one migrator.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// A table of the hub that a service needs: publishers an outbox, consumers an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubTable {
    Outbox,
    Inbox,
}

impl HubTable {
    /// Its version in the service's migration history: above any of the service's own (which
    /// count from 1), so the two never collide.
    fn version(self) -> i64 {
        match self {
            HubTable::Outbox => 10_001,
            HubTable::Inbox => 10_002,
        }
    }

    /// The DDL for the service whose schema is `schema`. Its text, comments included, is part of
    /// the migration's checksum: once released it never changes (`crates/schema/migrations.lock`).
    pub fn ddl(self, schema: &str) -> String {
        let s = platform::db::quote_ident(schema);
        match self {
            HubTable::Outbox => format!(
                "-- Events written in the same transaction as the change that caused them; the
-- relay publishes them in `seq` order and marks them.
CREATE TABLE IF NOT EXISTS {s}.outbox (
    id UUID PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    event_type TEXT NOT NULL,
    payload JSONB NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON {s}.outbox(seq) WHERE published_at IS NULL;
"
            ),
            HubTable::Inbox => format!(
                "-- Ids of the events this service has applied, recorded in the transaction of their
-- effect, so that a redelivered or duplicated event changes nothing.
CREATE TABLE IF NOT EXISTS {s}.processed_events (
    event_id UUID PRIMARY KEY,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"
            ),
        }
    }

    /// The table's migrations: its DDL, then the changes made to it since it was released.
    fn migrations(self, schema: &str) -> Vec<Migration> {
        let description = match self {
            HubTable::Outbox => "event hub outbox",
            HubTable::Inbox => "event hub inbox",
        };
        let mut all = vec![migration(self.version(), description, self.ddl(schema))];
        if self == HubTable::Outbox {
            all.push(migration(
                10_003,
                "event hub outbox trace context",
                outbox_trace_context(schema),
            ));
        }
        all
    }
}

/// The trace context column of the outbox (version 10 003).
pub fn outbox_trace_context(schema: &str) -> String {
    let s = platform::db::quote_ident(schema);
    format!(
        "-- The trace context (W3C traceparent and tracestate) of the span that recorded the event: its
-- publishing continues that trace, after a crash or a restart too. NULL when traces are off.
ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS trace_context JSONB;
"
    )
}

fn migration(version: i64, description: &'static str, sql: String) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(description),
        MigrationType::Simple,
        AssertSqlSafe(sql).into_sql_str(),
        false,
    )
}

/// `service`'s own migrations (`sqlx::migrate!()`) followed by the hub tables it uses, in the
/// service's schema `schema`.
pub fn with_hub_tables(service: Migrator, schema: &str, tables: &[HubTable]) -> Migrator {
    let mut migrations = service.migrations.into_owned();
    migrations.extend(tables.iter().flat_map(|t| t.migrations(schema)));
    migrations.sort();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..service
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_tables_follow_the_service_migrations_in_its_schema() {
        let migrator = with_hub_tables(Migrator::DEFAULT, "svc", &[HubTable::Inbox]);
        let versions: Vec<i64> = migrator.migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, [10_002]);
        assert!(
            migrator.migrations[0]
                .sql
                .as_str()
                .contains("\"svc\".processed_events")
        );
        // The outbox, then what was added to it since.
        let migrator = with_hub_tables(Migrator::DEFAULT, "svc", &[HubTable::Outbox]);
        let versions: Vec<i64> = migrator.migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, [10_001, 10_003]);
        assert!(
            migrator.migrations[1]
                .sql
                .as_str()
                .contains("\"svc\".outbox ADD COLUMN IF NOT EXISTS trace_context")
        );
    }
}
