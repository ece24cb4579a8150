//! Admin's consumer of every event (`#`): one `audit_logs` row per event, in the consumer's
//! transaction (which also records the event id in the inbox, so a redelivered event is a no-op;
//! the row's id is the event's id as a second guard), and its entry in the hash chain.
//!
//! In the shared topology a row's `user_id` must name a user of the legacy `users`: one that is
//! not there (deleted, a service credential) is written as NULL, its id left in `details`.

use std::sync::Arc;

use events::transient::RetryLater;
use events::{Envelope, Handler, HandlerError, HandlerFuture};
use platform::Topology;
use sqlx::PgConnection;
use tracing::Instrument;

use crate::audit::chain::{self, ChainError};
use crate::audit::facts;
use crate::audit::names::Names;
use crate::store::audit_logs::{self, AuditRow};

pub struct AuditWriter {
    pub names: Arc<Names>,
    /// In the shared topology `audit_logs.user_id` keeps its legacy key to `users`.
    pub topology: Topology,
}

impl Handler for AuditWriter {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a Envelope) -> HandlerFuture<'a> {
        Box::pin(async move {
            let facts = facts::of(event);
            let name = match (&facts.user_name, &facts.user_id) {
                (Some(name), _) => Some(name.clone()),
                (None, Some(user_id)) => self.names.of(user_id).await,
                (None, None) => None,
            };
            let mut row = AuditRow {
                id: event.id.to_string(),
                user_id: facts.user_id,
                action: facts.action,
                resource_type: facts.resource_type,
                resource_id: facts.resource_id,
                details: Some(facts::details(event, name.as_deref()).to_string()),
                ip_address: facts.ip_address,
                user_agent: facts.user_agent,
                // When it happened, not when it was audited: the log reads as a history.
                created_at: event.occurred_at.naive_utc(),
            };
            let insert = tracing::info_span!(
                "audit insert",
                otel.name = "INSERT audit_logs",
                otel.kind = "internal",
                db.system = "postgresql",
                action = %row.action,
            );
            let written = match self.topology {
                Topology::Split => audit_logs::insert(tx, &row).instrument(insert).await?,
                Topology::Shared => {
                    audit_logs::insert_on_legacy(tx, &mut row)
                        .instrument(insert)
                        .await?
                }
            };
            if !written {
                metrics::counter!("admin_audit_duplicates_total").increment(1);
                return Ok(());
            }
            chain::append(tx, &row.id)
                .await
                .map_err(|e| -> HandlerError {
                    // A database error stays one, so the consumer can tell an outage (retry) from
                    // a broken chain.
                    match e {
                        ChainError::Database(e) => Box::new(e),
                        // Waits in the queue, not in the dead letters, until an operator fixes it.
                        other => Box::new(RetryLater(other.to_string())),
                    }
                })?;
            let lag = (chrono::Utc::now() - event.occurred_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64();
            metrics::counter!("admin_audit_rows_total", "action" => contracts::events::metric_label(&row.action))
                .increment(1);
            metrics::histogram!("admin_audit_lag_seconds").record(lag);
            metrics::gauge!("admin_audit_last_lag_seconds").set(lag);
            Ok(())
        })
    }
}
