//! Waiting for something that happens in the background (an event consumed, a relay connected):
//! one poll loop with one interval, so every test waits the same way and says what it waited for.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// Calls `check` until it gives `Some`, at most for `limit`; `None` if it never did. `check` runs
/// at least once, even with a zero limit.
pub async fn eventually<T, F, Fut>(limit: Duration, check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(limit, POLL, check).await
}

/// [`eventually`], looking every `every`: for a moment that lasts only milliseconds, such as a
/// step of a process a test kills there.
pub async fn eventually_every<T, F, Fut>(
    limit: Duration,
    every: Duration,
    mut check: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_returns_the_first_value_and_gives_up_after_the_limit() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { (n == 3).then_some(n) }
        })
        .await;
        assert_eq!(value, Some(3));
        let never = eventually(Duration::from_millis(50), || async { None::<()> }).await;
        assert_eq!(never, None);
    }
}
