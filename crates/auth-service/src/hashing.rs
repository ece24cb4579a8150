//! Bounded password hashing. An argon2id hash takes about 19 MiB and tens of milliseconds of one
//! core by design; unbounded, a burst of logins runs one per request at once and takes the memory
//! of all of them (40 concurrent logins took auth from 59 MiB to 748 MiB). So hashes run on at
//! most `workers` threads at a time; up to `queue` more requests wait their turn; beyond that a
//! request is answered 503 with `Retry-After` at once, before any work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::error::{AuthError, Result};

pub struct HashPool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// Counts a waiting request until it gets its turn or is dropped (a client that hung up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    /// Runs `work` (a hash or a verification) on a blocking thread once a worker is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    metrics::counter!("auth_hashing_refused_total").increment(1);
                    return Err(AuthError::Busy {
                        retry_after_secs: 1,
                    });
                }
                let _waiting = Waiting(&self.waiting);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| AuthError::Internal(format!("hashing pool: {e}")))?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| AuthError::Internal(format!("password hashing task: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_workers_and_the_queue_a_request_is_refused_at_once() {
        let pool = Arc::new(HashPool::new(1, 2));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        let mut running = Vec::new();
        for _ in 0..3 {
            let (pool, hold) = (pool.clone(), hold.clone());
            running.push(tokio::spawn(async move {
                pool.run(move || {
                    let _ = hold.lock().unwrap().recv_timeout(Duration::from_secs(5));
                })
                .await
            }));
        }
        // One runs, two wait: the fourth is refused.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = pool.run(|| ()).await;
        assert!(
            matches!(refused, Err(AuthError::Busy { .. })),
            "{refused:?}"
        );
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for r in running {
            assert!(r.await.unwrap().is_ok());
        }
        assert!(pool.run(|| ()).await.is_ok(), "the queue empties again");
    }
}
