//! Point reads that arrive while others are in flight go to the database as one statement.
//!
//! On a small machine most of a lookup's cost is not the index probe but the round trip: the
//! service and PostgreSQL each wake up once per statement (profiled in docs/BENCHMARKS.md). Eight
//! lookups by primary key sent as one `= ANY($1)` cost PostgreSQL little more than one.
//!
//! A lookup never waits for a batch to fill. A free lane takes it at once, alone, so at low load a
//! lookup is exactly the single-row statement it was. Only lookups that arrive while every lane is
//! busy queue up, and the next lane to come free takes all of them (up to `max_batch`) together:
//! batches grow with the load and nothing waits on a timer.
//!
//! Each lookup's statement starts after the lookup was asked for, so it sees every write committed
//! before it, as without batching. Statements run on the lanes' own tasks: a client that hangs up
//! never cancels one halfway, so the connection stays in a known state.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::ApiError;

type Found<K, V> = sqlx::Result<Vec<(K, V)>>;
type FetchFn<K, V> =
    dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Found<K, V>> + Send>> + Send + Sync;

/// A batch's failure, given to every lookup that was in it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Shared(Arc<sqlx::Error>);

impl Shared {
    pub fn error(&self) -> &sqlx::Error {
        &self.0
    }
}

impl From<Shared> for ApiError {
    fn from(e: Shared) -> Self {
        ApiError::from_db(e.error())
    }
}

struct Job<K, V> {
    key: K,
    reply: oneshot::Sender<Result<Option<V>, Shared>>,
}

/// Coalesces lookups of `V` by key `K`; cheap to clone.
pub struct Coalescer<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K, V> {
    name: &'static str,
    lanes: usize,
    max_batch: usize,
    queue: mpsc::UnboundedSender<Job<K, V>>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job<K, V>>>>,
    fetch: Arc<FetchFn<K, V>>,
    /// Lanes start with the first lookup, inside the runtime that serves it.
    started: OnceLock<()>,
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    /// `fetch` gets distinct keys (one or up to `max_batch`) and returns the rows found with their
    /// keys, in any order; a key it does not return is not found. `lanes` statements run at once at
    /// most (at least one).
    pub fn new<F, Fut>(name: &'static str, lanes: usize, max_batch: usize, fetch: F) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Found<K, V>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::unbounded_channel();
        let fetch: Arc<FetchFn<K, V>> = Arc::new(move |keys| Box::pin(fetch(keys)));
        Self {
            inner: Arc::new(Inner {
                name,
                lanes: lanes.max(1),
                max_batch: max_batch.max(1),
                queue,
                receiver: Arc::new(Mutex::new(receiver)),
                fetch,
                started: OnceLock::new(),
            }),
        }
    }

    /// The value of `key`, if there is one.
    pub async fn get(&self, key: K) -> Result<Option<V>, Shared> {
        self.inner.started.get_or_init(|| {
            for _ in 0..self.inner.lanes {
                tokio::spawn(lane(
                    self.inner.name,
                    self.inner.receiver.clone(),
                    self.inner.fetch.clone(),
                    self.inner.max_batch,
                ));
            }
        });
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Job { key, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Shared {
    Shared(Arc::new(sqlx::Error::WorkerCrashed))
}

/// Takes the next lookup (waiting for one), everything queued behind it, and answers them all
/// with one statement; until the coalescer is dropped.
async fn lane<K, V>(
    name: &'static str,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job<K, V>>>>,
    fetch: Arc<FetchFn<K, V>>,
    max_batch: usize,
) where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let mut jobs = Vec::with_capacity(max_batch);
    loop {
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < max_batch {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        // Whoever hung up (or timed out) meanwhile needs no answer.
        jobs.retain(|job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let mut keys: Vec<K> = Vec::with_capacity(jobs.len());
        for job in &jobs {
            if !keys.contains(&job.key) {
                keys.push(job.key.clone());
            }
        }
        metrics::histogram!("db_lookup_batch_size", "lookup" => name).record(keys.len() as f64);
        let outcome = AssertUnwindSafe((fetch)(keys)).catch_unwind().await;
        match outcome {
            Ok(Ok(found)) => {
                let found: HashMap<K, V> = found.into_iter().collect();
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Ok(found.get(&job.key).cloned()));
                }
            }
            Ok(Err(e)) => {
                let shared = Shared(Arc::new(e));
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(shared.clone()));
                }
            }
            Err(_) => {
                tracing::error!(lookup = name, "a batched lookup panicked");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(stopped()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// A fetch that records the keys of each call and waits for a permit before answering
    /// `key * 10` for even keys (odd keys are not found).
    /// The keys of each call of a fetch.
    type Calls = Arc<StdMutex<Vec<Vec<u32>>>>;

    fn recording(gate: Arc<Semaphore>) -> (Coalescer<u32, u32>, Calls) {
        let calls = Arc::new(StdMutex::new(Vec::new()));
        let seen = calls.clone();
        let lookups = Coalescer::new("test", 1, 4, move |keys: Vec<u32>| {
            seen.lock().unwrap().push(keys.clone());
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok(keys
                    .into_iter()
                    .filter(|k| k % 2 == 0)
                    .map(|k| (k, k * 10))
                    .collect())
            }
        });
        (lookups, calls)
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out");
    }

    #[tokio::test]
    async fn a_lookup_alone_is_fetched_alone_and_at_once() {
        let (lookups, calls) = recording(Arc::new(Semaphore::new(100)));
        assert_eq!(lookups.get(2).await.unwrap(), Some(20));
        assert_eq!(lookups.get(3).await.unwrap(), None);
        assert_eq!(*calls.lock().unwrap(), vec![vec![2], vec![3]]);
    }

    #[tokio::test]
    async fn lookups_queued_behind_a_statement_go_together_up_to_the_batch_size() {
        let gate = Arc::new(Semaphore::new(0));
        let (lookups, calls) = recording(gate.clone());
        let first = tokio::spawn({
            let lookups = lookups.clone();
            async move { lookups.get(0).await }
        });
        until(|| calls.lock().unwrap().len() == 1).await;
        // While the first statement is in flight: six lookups, one key asked twice.
        let queued: Vec<_> = [2, 4, 5, 4, 6, 8]
            .into_iter()
            .map(|k| {
                let lookups = lookups.clone();
                tokio::spawn(async move { (k, lookups.get(k).await) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.add_permits(10);
        assert_eq!(first.await.unwrap().unwrap(), Some(0));
        for lookup in queued {
            let (k, value) = lookup.await.unwrap();
            assert_eq!(value.unwrap(), (k % 2 == 0).then_some(k * 10), "key {k}");
        }
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls[0], vec![0]);
        // Four lookups per batch at most, a key fetched once per batch.
        let batched: Vec<u32> = calls[1..].iter().flatten().copied().collect();
        assert!(calls[1..].iter().all(|c| c.len() <= 4), "{calls:?}");
        assert_eq!(calls[1], vec![2, 4, 5], "{calls:?}");
        let mut distinct = batched.clone();
        distinct.sort();
        assert_eq!(distinct, vec![2, 4, 5, 6, 8], "{calls:?}");
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_lookup_of_its_batch_and_the_lane_goes_on() {
        let calls = Arc::new(StdMutex::new(0));
        let seen = calls.clone();
        let lookups = Coalescer::new("test", 1, 8, move |keys: Vec<u32>| {
            *seen.lock().unwrap() += 1;
            async move {
                if keys.contains(&13) {
                    return Err(sqlx::Error::PoolTimedOut);
                }
                Ok(keys.into_iter().map(|k| (k, k)).collect())
            }
        });
        let err = lookups.get(13).await.unwrap_err();
        assert!(matches!(err.error(), sqlx::Error::PoolTimedOut));
        assert_eq!(
            ApiError::from(err).status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(lookups.get(1).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_panicking_fetch_answers_its_batch_and_the_lane_goes_on() {
        let lookups = Coalescer::new("test", 1, 8, move |keys: Vec<u32>| async move {
            assert!(!keys.contains(&7), "seven");
            Ok(keys.into_iter().map(|k| (k, k)).collect())
        });
        let err = lookups.get(7).await.unwrap_err();
        assert!(matches!(err.error(), sqlx::Error::WorkerCrashed));
        assert_eq!(lookups.get(1).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_lookup_whose_caller_gave_up_is_not_fetched() {
        let gate = Arc::new(Semaphore::new(0));
        let (lookups, calls) = recording(gate.clone());
        let first = tokio::spawn({
            let lookups = lookups.clone();
            async move { lookups.get(0).await }
        });
        until(|| calls.lock().unwrap().len() == 1).await;
        let abandoned = tokio::time::timeout(Duration::from_millis(10), lookups.get(2)).await;
        assert!(abandoned.is_err(), "still queued");
        let kept = tokio::spawn({
            let lookups = lookups.clone();
            async move { lookups.get(4).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.add_permits(10);
        first.await.unwrap().unwrap();
        assert_eq!(kept.await.unwrap().unwrap(), Some(40));
        assert_eq!(*calls.lock().unwrap(), vec![vec![0], vec![4]]);
    }
}
