//! Slows down password guessing: too many failed logins for one email, or from one client IP,
//! within the window answer 429 with `Retry-After` until the oldest failure leaves the window.
//!
//! Kept in memory: it is a brake on guessing, not an account lock, and one instance's view is
//! enough for that. A success clears the email's failures.

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

    /// How long the caller must wait before trying again, if it is over a limit.
    pub fn retry_after(&self, email: &str, ip: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("throttle lock");
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

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now - *t >= self.settings.window)
        {
            times.pop_front();
        }
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
}
