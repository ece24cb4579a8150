//! Spawning the sandbox on port 0 and a webhook receiver that checks every signature the way a
//! real receiver would, independently of the sandbox's own `sign`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use hmac::{Hmac, Mac};
use platform::Env;
use psp_sandbox::Settings;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "whsec_sandbox_test_secret";
/// Long enough for a webhook retried once (0.5 s backoff) on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(10);

pub use test_support::eventually;

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Value,
    /// The signature verified with [`SECRET`] and its timestamp is recent.
    pub signed: bool,
    pub timestamp: Option<i64>,
    pub content_type: Option<String>,
    /// What the receiver answered.
    pub answered: StatusCode,
}

#[derive(Default)]
struct ReceiverState {
    /// How many of the next requests to answer 500.
    failures: AtomicU32,
    deliveries: Mutex<Vec<Delivery>>,
}

/// A webhook endpoint on port 0.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn spawn() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/psp/webhooks", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://127.0.0.1:{port}/psp/webhooks"),
            state,
        }
    }

    /// Answers the next `n` requests with a 500.
    pub fn fail_next(&self, n: u32) {
        self.state.failures.store(n, Ordering::SeqCst);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// Every request about the charge of `reference`.
    pub fn deliveries_for(&self, reference: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.event["data"]["reference"] == reference)
            .collect()
    }

    /// Waits for the first accepted (2xx) webhook of `reference`.
    pub async fn accepted(&self, reference: &str) -> Delivery {
        eventually(WAIT, || async {
            self.deliveries_for(reference)
                .into_iter()
                .find(|d| d.answered.is_success())
        })
        .await
        .unwrap_or_else(|| panic!("no webhook accepted for {reference}"))
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = headers
        .get("psp-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let timestamp = verify(SECRET.as_bytes(), header, &body);
    let failing = state
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if timestamp.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    };
    state.deliveries.lock().unwrap().push(Delivery {
        event: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed: timestamp.is_some(),
        timestamp,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        answered,
    });
    answered
}

/// A receiver's check of `PSP-Signature`: the timestamp when the HMAC matches and is at most
/// five minutes old.
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> Option<i64> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v1)) => signature = hex::decode(v1).ok(),
            _ => {}
        }
    }
    let (timestamp, signature) = (timestamp?, signature?);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&signature).ok()?;
    ((Utc::now().timestamp() - timestamp).abs() <= 300).then_some(timestamp)
}

/// Test settings: no latency, a 200 ms settlement, a 1.5 s hang, webhooks to `receiver`.
pub fn settings(receiver: &Receiver) -> Settings {
    Settings::from_env(&Env::from_pairs([
        ("PSP_WEBHOOK_SECRET", SECRET),
        ("PSP_WEBHOOK_URL", receiver.url.as_str()),
        ("PSP_SANDBOX_PORT", "0"),
        ("PSP_SANDBOX_LATENCY_MS", "0"),
        ("PSP_SANDBOX_SETTLE_DELAY_MS", "200"),
        ("PSP_SANDBOX_HANG_MS", "1500"),
    ]))
    .expect("valid test settings")
}

/// A running sandbox.
pub struct TestSandbox {
    pub base: String,
    pub client: reqwest::Client,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
}

/// A body of `POST /charges` in USD.
pub fn charge(reference: &str, amount: &str) -> Value {
    json!({"reference": reference, "amount": amount, "currency": "USD"})
}

/// A reference no other test uses.
pub fn reference() -> String {
    format!("pay_{}", uuid::Uuid::new_v4().simple())
}

impl TestSandbox {
    pub async fn spawn(settings: Settings) -> Self {
        let sandbox = psp_sandbox::build(settings)
            .await
            .expect("the sandbox starts");
        let base = format!("http://127.0.0.1:{}", sandbox.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(sandbox.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            stop,
            served,
        }
    }

    /// Stops serving and waits until the sandbox has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/charges", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` and returns the status, whether it was a replay, and the JSON body.
    pub async fn create(&self, body: &Value) -> (StatusCode, bool, Value) {
        let response = self.post(body).await;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        (status, replayed, response.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// The charge of `reference`, which must exist.
    pub async fn charge(&self, reference: &str) -> Value {
        let (status, body) = self.get(&format!("/charges/{reference}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until the charge of `reference` has `status`.
    pub async fn settled(&self, reference: &str, status: &str) -> Value {
        eventually(WAIT, || async {
            let charge = self.charge(reference).await;
            (charge["status"] == status).then_some(charge)
        })
        .await
        .unwrap_or_else(|| panic!("{reference} never became {status}"))
    }
}

/// A sandbox and its webhook receiver.
pub async fn spawn() -> (TestSandbox, Receiver) {
    let receiver = Receiver::spawn().await;
    let sandbox = TestSandbox::spawn(settings(&receiver)).await;
    (sandbox, receiver)
}
