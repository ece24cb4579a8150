//! The acting user's name for a new audit row, through auth (cached by `auth-client`). Auth being
//! slow or down must not hold the audit log back: a lookup gets a short time limit, and after a
//! failure names are not asked for a while; the row is written with a null name instead.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use auth_client::AuthClient;
use tokio::time::Instant;

pub struct Names {
    auth: Arc<AuthClient>,
    timeout: Duration,
    pause: Duration,
    paused_until: Mutex<Option<Instant>>,
}

impl Names {
    pub fn new(auth: Arc<AuthClient>, timeout: Duration, pause: Duration) -> Self {
        Self {
            auth,
            timeout,
            pause,
            paused_until: Mutex::new(None),
        }
    }

    fn paused(&self) -> bool {
        let until = *self.paused_until.lock().expect("names lock");
        until.is_some_and(|until| Instant::now() < until)
    }

    fn pause(&self) {
        *self.paused_until.lock().expect("names lock") = Some(Instant::now() + self.pause);
    }

    /// The user's name now, or `None` when auth does not know them or cannot answer in time.
    pub async fn of(&self, user_id: &str) -> Option<String> {
        if self.paused() {
            metrics::counter!("admin_name_lookups_total", "result" => "skipped").increment(1);
            return None;
        }
        let (result, name) = match tokio::time::timeout(self.timeout, self.auth.user(user_id)).await
        {
            Ok(Ok(Some(user))) => ("found", Some(user.name)),
            Ok(Ok(None)) => ("not_found", None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "auth cannot give a user's name; audit rows get none for a while");
                self.pause();
                ("failed", None)
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "auth is slow to give a user's name; audit rows get none for a while"
                );
                self.pause();
                ("timeout", None)
            }
        };
        metrics::counter!("admin_name_lookups_total", "result" => result).increment(1);
        name
    }
}
