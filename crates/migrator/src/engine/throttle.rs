//! A ceiling on rows per second across every job of a copy (`mfe migrate copy --max-rate`), for a
//! legacy database that serves production while it is copied: the copy reads no faster than the
//! operator allows, whatever `--jobs` is.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    rows_per_second: u64,
    /// When the rows taken so far are paid for: a batch waits until then.
    next: Mutex<Option<Instant>>,
}

impl Throttle {
    /// `None` for 0 (no ceiling).
    pub fn new(rows_per_second: u64) -> Option<Self> {
        (rows_per_second > 0).then(|| Self {
            rows_per_second,
            next: Mutex::new(None),
        })
    }

    pub fn rows_per_second(&self) -> u64 {
        self.rows_per_second
    }

    /// Rows between two calls of [`Throttle::take`]: about four a second, so the pace is even.
    pub fn batch(&self) -> u64 {
        (self.rows_per_second / 4).clamp(1, 10_000)
    }

    /// Accounts for `rows` more rows, waiting as long as they must wait at the ceiling.
    pub async fn take(&self, rows: u64) {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            // Time not used (a pause, a slow batch) is not saved up for a burst later.
            let start = next.map_or(now, |n| n.max(now));
            let cost = Duration::from_secs_f64(rows as f64 / self.rows_per_second as f64);
            *next = Some(start + cost);
            start.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_go_through_no_faster_than_the_ceiling_across_callers() {
        let throttle = std::sync::Arc::new(Throttle::new(10_000).unwrap());
        let t0 = tokio::time::Instant::now();
        let mut jobs = Vec::new();
        for _ in 0..4 {
            let throttle = throttle.clone();
            jobs.push(tokio::spawn(async move {
                for _ in 0..5 {
                    throttle.take(250).await;
                }
            }));
        }
        for job in jobs {
            job.await.unwrap();
        }
        // 5,000 rows at 10,000/s: the first batch goes at once, the last waits 475 ms at least.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(475), "{took:?}");
        assert_eq!(throttle.batch(), 2_500);
        assert!(Throttle::new(0).is_none());
    }
}
