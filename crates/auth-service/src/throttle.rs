//! Slows down password guessing: too many failed logins for one email, or from one client IP,
//! within the window answer 429 with `Retry-After` until the oldest failure leaves the window.
//!
//! Kept in memory: it is a brake on guessing, not an account lock, and one instance's view is
//! enough for that. A success clears the email's failures.
//!
//! Exact under any concurrency: an attempt is reserved (counted as a failure) before its password
//! is checked, under the same lock as the decision, so a burst of attempts at once gets no more
//! checks than the limit; a success takes its reservation back.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::settings::ThrottleSettings;

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

pub struct LoginThrottle {
    settings: ThrottleSettings,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(email: &str, ip: Option<&str>) -> [(String, bool); 2] {
        [
            (format!("email:{}", email.trim().to_lowercase()), true),
            (format!("ip:{}", ip.unwrap_or("-")), false),
        ]
    }

    fn limit(&self, is_email: bool) -> usize {
        (if is_email {
            self.settings.max_failures_per_email
        } else {
            self.settings.max_failures_per_ip
        }) as usize
    }

    /// Reserves an attempt: counted as a failure from now on, unless [`Reservation::succeeded`]
    /// takes it back. `Err` says how long the caller must wait, when it is over a limit.
    pub fn reserve(&self, email: &str, ip: Option<&str>) -> Result<Reservation<'_>, Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("throttle lock");
        if let Some(wait) = self.over_limit(&mut failures, email, ip, now) {
            return Err(wait);
        }
        self.push(&mut failures, email, ip, now);
        Ok(Reservation {
            throttle: self,
            email: email.to_string(),
            ip: ip.map(str::to_string),
            at: now,
        })
    }

    /// How long the caller must wait before trying again, if it is over a limit.
    pub fn retry_after(&self, email: &str, ip: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("throttle lock");
        self.over_limit(&mut failures, email, ip, now)
    }

    fn over_limit(
        &self,
        failures: &mut HashMap<String, VecDeque<Instant>>,
        email: &str,
        ip: Option<&str>,
        now: Instant,
    ) -> Option<Duration> {
        let mut wait = None;
        for (key, is_email) in Self::keys(email, ip) {
            if ip.is_none() && !is_email {
                continue;
            }
            if let Some(times) = failures.get_mut(&key) {
                self.expire(times, now);
                if times.len() >= self.limit(is_email) {
                    let oldest = *times.front().expect("non-empty");
                    let until = self.settings.window.saturating_sub(now - oldest);
                    wait = Some(wait.map_or(until, |w: Duration| w.max(until)));
                }
            }
        }
        wait
    }

    pub fn record_failure(&self, email: &str, ip: Option<&str>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("throttle lock");
        self.push(&mut failures, email, ip, now);
    }

    fn push(
        &self,
        failures: &mut HashMap<String, VecDeque<Instant>>,
        email: &str,
        ip: Option<&str>,
        now: Instant,
    ) {
        if failures.len() > SWEEP_ABOVE {
            let window = self.settings.window;
            failures.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
        }
        for (key, is_email) in Self::keys(email, ip) {
            if ip.is_none() && !is_email {
                continue;
            }
            let times = failures.entry(key).or_default();
            self.expire(times, now);
            times.push_back(now);
            // Only the newest `limit` failures matter for the decision.
            while times.len() > self.limit(is_email) {
                times.pop_front();
            }
        }
    }

    pub fn record_success(&self, email: &str) {
        let key = format!("email:{}", email.trim().to_lowercase());
        self.failures.lock().expect("throttle lock").remove(&key);
    }

    /// A success: the email's failures go, and this attempt's count on the client address.
    fn take_back(&self, email: &str, ip: Option<&str>, at: Instant) {
        let mut failures = self.failures.lock().expect("throttle lock");
        for (key, is_email) in Self::keys(email, ip) {
            if is_email {
                failures.remove(&key);
            } else if ip.is_some()
                && let Some(times) = failures.get_mut(&key)
                && let Some(i) = times.iter().position(|t| *t == at)
            {
                times.remove(i);
            }
        }
    }

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now - *t >= self.settings.window)
        {
            times.pop_front();
        }
    }
}

/// An attempt counted before its outcome is known: a failure unless it succeeded. Dropped
/// without an outcome (the request was dropped mid-check), it stays a failure.
pub struct Reservation<'a> {
    throttle: &'a LoginThrottle,
    email: String,
    ip: Option<String>,
    at: Instant,
}

impl Reservation<'_> {
    pub fn succeeded(self) {
        self.throttle
            .take_back(&self.email, self.ip.as_deref(), self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_email: u32, per_ip: u32, window_ms: u64) -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            max_failures_per_email: per_email,
            max_failures_per_ip: per_ip,
            window: Duration::from_millis(window_ms),
        })
    }

    #[test]
    fn an_email_is_blocked_after_its_limit_regardless_of_case() {
        let t = throttle(3, 100, 60_000);
        for _ in 0..3 {
            assert!(t.retry_after("A@x.io", Some("1.1.1.1")).is_none());
            t.record_failure("a@X.io", Some("1.1.1.1"));
        }
        let wait = t.retry_after("a@x.io", Some("2.2.2.2")).expect("blocked");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(
            t.retry_after("b@x.io", Some("1.1.1.1")).is_none(),
            "other emails go on"
        );
    }

    #[test]
    fn an_ip_is_blocked_across_emails() {
        let t = throttle(100, 2, 60_000);
        t.record_failure("a@x.io", Some("9.9.9.9"));
        t.record_failure("b@x.io", Some("9.9.9.9"));
        assert!(t.retry_after("c@x.io", Some("9.9.9.9")).is_some());
        assert!(t.retry_after("c@x.io", Some("8.8.8.8")).is_none());
    }

    #[test]
    fn failures_leave_the_window_and_success_clears_the_email() {
        let t = throttle(1, 100, 50);
        t.record_failure("a@x.io", None);
        assert!(t.retry_after("a@x.io", None).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.retry_after("a@x.io", None).is_none());
        t.record_failure("a@x.io", None);
        t.record_success("A@x.io");
        assert!(t.retry_after("a@x.io", None).is_none());
    }

    #[test]
    fn reservations_are_counted_before_their_outcome_and_a_success_takes_its_own_back() {
        let t = throttle(3, 5, 60_000);
        let held: Vec<_> = (0..3)
            .map(|_| {
                t.reserve("a@x.io", Some("1.1.1.1"))
                    .expect("under the limit")
            })
            .collect();
        assert!(
            t.reserve("a@x.io", Some("1.1.1.1")).is_err(),
            "three checks in flight use up the limit"
        );
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        assert!(
            t.reserve("a@x.io", Some("1.1.1.1")).is_ok(),
            "a success clears the email"
        );
        drop(held);
        // The ip kept the two dropped reservations and the last one: 3 of 5.
        t.reserve("b@x.io", Some("1.1.1.1")).unwrap();
        t.reserve("c@x.io", Some("1.1.1.1")).unwrap();
        assert!(t.reserve("d@x.io", Some("1.1.1.1")).is_err());
    }

    #[test]
    fn a_burst_from_many_threads_gets_exactly_the_limit() {
        let t = std::sync::Arc::new(throttle(5, 1000, 60_000));
        let granted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..40 {
                s.spawn(|| {
                    if let Ok(r) = t.reserve("victim@x.io", Some("6.6.6.6")) {
                        granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        drop(r);
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 5);
    }
}
