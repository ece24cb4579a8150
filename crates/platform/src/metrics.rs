//! Prometheus metrics: requests by route and status, a latency histogram, database pool gauges.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder), so it is installed
//! once and shared by every app a process runs, as tests do.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty");
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already global (only possible in odd test setups): keep a
                // private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            start_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Histogram samples are kept one by one until upkeep folds them into buckets; the exporter does
/// that only when asked (or on a scrape), so a service nobody scrapes would hold every latency
/// it ever measured. A thread, not a task: the recorder may be installed outside a runtime.
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
    }
}

/// Middleware recording `http_requests_total` and `http_request_duration_seconds` per matched
/// route (never the raw path, whose ids would explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Sets the pool gauges just before a scrape, so they are current without a background task.
pub fn record_pool(service: &'static str, pool: &PgPool) {
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "service" => service, "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "service" => service, "state" => "in_use")
        .set(size - idle);
    metrics::gauge!("db_pool_max_connections", "service" => service)
        .set(pool.options().get_max_connections() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident memory of this process (nextest runs each test in a process of its own).
    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    fn record_many() {
        for _ in 0..2_000_000 {
            metrics::histogram!("upkeep_test_duration_seconds").record(0.002);
        }
        std::thread::sleep(UPKEEP_EVERY * 2);
    }

    #[test]
    fn latency_samples_do_not_pile_up_when_nobody_scrapes() {
        let handle = handle();
        record_many();
        let before = resident_bytes();
        for _ in 0..4 {
            record_many();
        }
        let grown = resident_bytes().saturating_sub(before);
        // Kept one by one, 8 M samples would be 64 MB.
        assert!(grown < 16 << 20, "grew by {} MB", grown >> 20);
        // Counted once folded: on a loaded machine the upkeep may come a little late.
        let counted = |text: &str| text.contains("upkeep_test_duration_seconds_count 10000000");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !counted(&handle.render()) && std::time::Instant::now() < deadline {
            std::thread::sleep(UPKEEP_EVERY);
        }
        assert!(counted(&handle.render()), "every sample is still counted");
    }
}
