//! The background worker: a few lanes, each taking the next due job (`payments.jobs`) with
//! `FOR UPDATE SKIP LOCKED`, so lanes and replicas never work on the same payment. A job put
//! due now wakes the lanes through `LISTEN`; a poll is the safety net. Housekeeping (expired
//! Idempotency-Keys, the status gauges) runs beside them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::{idempotency_keys, jobs, payments};
use crate::{AppState, charging};

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

/// Starts the lanes, the wake-up listener and the housekeeping; they run until the process ends.
pub fn spawn(state: AppState) -> Vec<JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    let mut tasks = vec![
        tokio::spawn(listen(state.clone(), wake.clone())),
        tokio::spawn(housekeeping(state.clone())),
    ];
    for _ in 0..state.settings.worker.concurrency {
        tasks.push(tokio::spawn(lane(state.clone(), wake.clone())));
    }
    tasks
}

async fn lane(state: AppState, wake: Arc<Notify>) {
    let poll = state.settings.worker.poll;
    loop {
        match charging::run_due_job(&state).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "payments worker: a job failed; retrying later"),
        }
        let _ = tokio::time::timeout(poll, wake.notified()).await;
    }
}

async fn listen(state: AppState, wake: Arc<Notify>) {
    loop {
        if let Err(e) = wake_on_notifications(&state, &wake).await {
            tracing::debug!(error = %e, "payments worker: wake-up listener lost; polling meanwhile");
        }
        tokio::time::sleep(state.settings.worker.poll).await;
    }
}

async fn wake_on_notifications(state: &AppState, wake: &Notify) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(&state.pool).await?;
    listener.listen(jobs::WAKE_CHANNEL).await?;
    loop {
        listener.recv().await?;
        wake.notify_waiters();
    }
}

async fn housekeeping(state: AppState) {
    let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        every.tick().await;
        if let Ok(mut conn) = state.pool.acquire().await {
            match jobs::adopt_orphans(&mut conn).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    adopted = n,
                    "processing payments without a job will be reconciled"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for processing payments without a job")
                }
            }
        }
        match idempotency_keys::purge_expired(&state.pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %e, "could not purge idempotency keys"),
        }
        if let Ok(counts) = payments::count_by_status(&state.pool).await {
            for (status, n) in counts {
                metrics::gauge!("payments_by_status", "status" => status).set(n as f64);
            }
        }
        if let Ok(mut conn) = state.pool.acquire().await
            && let Ok(backlog) = jobs::backlog(&mut conn).await
        {
            for (kind, n) in backlog {
                metrics::gauge!("payments_jobs_backlog", "kind" => kind).set(n as f64);
            }
        }
    }
}
