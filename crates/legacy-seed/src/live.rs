//! `mfe legacy write-load`: a live POC-2 writing to the legacy database while it is migrated, for
//! tests, demos and benchmarks of the live migration (copy with writes running, sync, cutover).
//!
//! Every operation is one transaction of the kind a POC-2 service would commit: registrations
//! (a user, its profile and a refresh token together: a transaction across three services'
//! tables), logins and logouts, payments created and moved through their states with their
//! history, profile edits that rewrite a big TOASTed `bio` and edits that leave it unchanged (the
//! decoding trap), audit rows, config changes, and deletes. The report counts what committed, per
//! kind and per table (inserted, updated, deleted), so a test can check that every write arrived.
//!
//! Rows it deletes are rows it created, children first and explicitly, so the counts are exact:
//! no cascade or `SET NULL` changes a row the report does not count.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

use platform::config::mask_url;

/// What to play.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    /// Operations per second, over all workers.
    pub rate: u32,
    /// How long to run (it also stops when the `stop` future of [`write_load`] completes).
    pub duration: Duration,
    /// Concurrent connections.
    pub workers: usize,
    /// Seeds the choice of operations and every generated value.
    pub seed: u64,
}

/// What committed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// Committed operations per kind.
    pub operations: BTreeMap<&'static str, u64>,
    /// Rows written per table.
    pub tables: BTreeMap<&'static str, RowCounts>,
    /// Operations that failed (rolled back, nothing written), per kind; and the last error.
    pub failures: BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl LoadReport {
    pub fn committed(&self) -> u64 {
        self.operations.values().sum()
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("the legacy database has no users to pay with: seed it first (mfe legacy seed)")]
    Empty,
    #[error("{0}")]
    Database(#[from] sqlx::Error),
}

/// The kinds of operation, with their weights out of 100.
const KINDS: &[(&str, u32)] = &[
    ("register", 10),
    ("login", 14),
    ("logout", 5),
    ("pay", 20),
    ("advance", 20),
    ("profile_bio", 5),
    ("profile_phone", 10),
    ("audit", 10),
    ("config", 4),
    ("delete_user", 2),
];

/// A `bio` this long is stored out of line (TOAST): random text does not compress under 2 kB.
const BIG_BIO_CHARS: usize = 8_000;
/// Users and payments of its own the writer keeps track of.
const TRACKED: usize = 10_000;

/// What the workers share: the users and payments they may touch, and the counts.
struct Shared {
    /// Existing users to pay between (never deleted by the writer).
    payers: Vec<String>,
    /// Users the writer registered and has not deleted: (id, has a big bio).
    own_users: Vec<(String, bool)>,
    /// The writer's payments still pending or processing: (id, status).
    open_payments: Vec<(String, &'static str)>,
    report: LoadReport,
    /// A bcrypt hash for registered users (computing one per user would be the bottleneck).
    password_hash: String,
}

type Counts = Vec<(&'static str, RowCounts)>;

fn ins(table: &'static str, n: u64) -> (&'static str, RowCounts) {
    (
        table,
        RowCounts {
            inserted: n,
            ..Default::default()
        },
    )
}

fn upd(table: &'static str, n: u64) -> (&'static str, RowCounts) {
    (
        table,
        RowCounts {
            updated: n,
            ..Default::default()
        },
    )
}

fn del(table: &'static str, n: u64) -> (&'static str, RowCounts) {
    (
        table,
        RowCounts {
            deleted: n,
            ..Default::default()
        },
    )
}

/// Runs the load until `duration` has passed or `stop` completes, whichever is first.
pub async fn write_load(
    opts: &LoadOptions,
    stop: impl Future<Output = ()> + Send,
) -> Result<LoadReport, LoadError> {
    let pool = PgPoolOptions::new()
        .max_connections(opts.workers.max(1) as u32)
        .connect(&opts.url)
        .await
        .map_err(|source| LoadError::Connect {
            url: mask_url(&opts.url),
            source,
        })?;
    let payers: Vec<String> =
        sqlx::query_scalar("SELECT id FROM users ORDER BY md5(id) LIMIT 1000")
            .fetch_all(&pool)
            .await?;
    if payers.is_empty() {
        return Err(LoadError::Empty);
    }
    let password_hash = bcrypt::hash("load-password", 4).unwrap_or_default();
    let shared = Arc::new(Mutex::new(Shared {
        payers,
        own_users: Vec::new(),
        open_payments: Vec::new(),
        report: LoadReport::default(),
        password_hash,
    }));
    let started = Instant::now();
    let deadline = started + opts.duration;
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let (tx, rx) = async_channel(opts.workers.max(1) * 2);
    let workers: Vec<_> = (0..opts.workers.max(1))
        .map(|w| {
            let (pool, shared, rx) = (pool.clone(), shared.clone(), rx.clone());
            let mut rng =
                StdRng::seed_from_u64(opts.seed.wrapping_mul(1000).wrapping_add(w as u64));
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    let kind = pick(&mut rng);
                    run_one(&pool, &shared, kind, &mut rng).await;
                }
            })
        })
        .collect();
    let ticker = async {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while Instant::now() < deadline {
            tick.tick().await;
            if tx.send(()).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = ticker => {}
        _ = stop => {}
    }
    drop(tx);
    for worker in workers {
        let _ = worker.await;
    }
    pool.close().await;
    let mut report = std::mem::take(&mut shared.lock().expect("load state").report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A bounded queue of ticks: a worker that falls behind makes the ticker wait, so the load never
/// runs faster than asked and never queues without bound.
fn async_channel(cap: usize) -> (tokio::sync::mpsc::Sender<()>, SharedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (tx, SharedReceiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

#[derive(Clone)]
struct SharedReceiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<()>>>);

impl SharedReceiver {
    async fn recv(&self) -> Option<()> {
        self.0.lock().await.recv().await
    }
}

fn pick(rng: &mut StdRng) -> &'static str {
    let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
    let mut n = rng.random_range(0..total);
    for (kind, weight) in KINDS {
        if n < *weight {
            return kind;
        }
        n -= weight;
    }
    KINDS[0].0
}

fn text(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn new_id(rng: &mut StdRng) -> String {
    let bytes: [u8; 16] = rng.random();
    uuid_text(bytes)
}

fn uuid_text(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Runs one operation in its own transaction and counts it if it committed.
async fn run_one(pool: &PgPool, shared: &Mutex<Shared>, kind: &'static str, rng: &mut StdRng) {
    let outcome = async {
        let mut tx = pool.begin().await?;
        let counts = apply(&mut tx, shared, kind, rng).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(counts)
    }
    .await;
    let mut state = shared.lock().expect("load state");
    match outcome {
        Ok(Some((counts, after))) => {
            *state.report.operations.entry(kind).or_default() += 1;
            for (table, c) in counts {
                let t = state.report.tables.entry(table).or_default();
                t.inserted += c.inserted;
                t.updated += c.updated;
                t.deleted += c.deleted;
            }
            after.apply(&mut state);
        }
        // Nothing to do for this kind now (no open payment yet, ...).
        Ok(None) => {}
        Err(e) => {
            *state.report.failures.entry(kind).or_default() += 1;
            state.report.last_error = Some(e.to_string());
        }
    }
}

/// What a committed operation changes in the writer's own bookkeeping (applied only after the
/// commit, so a rolled-back operation leaves no trace).
enum After {
    Nothing,
    Registered(String),
    BigBio(String),
    Deleted(String),
    Paid(String),
    Advanced(String, &'static str),
}

impl After {
    fn apply(self, state: &mut Shared) {
        match self {
            After::Nothing => {}
            After::Registered(id) => {
                if state.own_users.len() < TRACKED {
                    state.own_users.push((id, false));
                }
            }
            After::BigBio(id) => {
                if let Some(u) = state.own_users.iter_mut().find(|(u, _)| *u == id) {
                    u.1 = true;
                }
            }
            After::Deleted(id) => state.own_users.retain(|(u, _)| *u != id),
            After::Paid(id) => {
                if state.open_payments.len() < TRACKED {
                    state.open_payments.push((id, "pending"));
                }
            }
            After::Advanced(id, status) => {
                if status == "processing" {
                    if let Some(p) = state.open_payments.iter_mut().find(|(p, _)| *p == id) {
                        p.1 = "processing";
                    }
                } else {
                    state.open_payments.retain(|(p, _)| *p != id);
                }
            }
        }
    }
}

/// A choice made under the lock, before the transaction runs.
fn choose<T: Clone>(
    shared: &Mutex<Shared>,
    rng: &mut StdRng,
    f: impl Fn(&Shared) -> &[T],
) -> Option<T> {
    let state = shared.lock().expect("load state");
    let items = f(&state);
    if items.is_empty() {
        return None;
    }
    Some(items[rng.random_range(0..items.len())].clone())
}

/// What one operation wrote (per table), and what the load remembers of it; `None` when it had
/// nothing to work on (no user yet, a payment another worker moved first).
type Outcome = Result<Option<(Counts, After)>, sqlx::Error>;

/// The time each row gets: the statement's own, in UTC as legacy stores it.
const NOW: &str = "clock_timestamp() AT TIME ZONE 'UTC'";

/// Runs the operation `kind` in `tx`.
async fn apply(
    tx: &mut PgConnection,
    shared: &Mutex<Shared>,
    kind: &'static str,
    rng: &mut StdRng,
) -> Outcome {
    match kind {
        "register" => register(tx, shared, rng).await,
        "login" => login(tx, shared, rng).await,
        "logout" => logout(tx, shared, rng).await,
        "pay" => pay(tx, shared, rng).await,
        "advance" => advance(tx, shared, rng).await,
        "profile_bio" => profile_bio(tx, shared, rng).await,
        "profile_phone" => profile_phone(tx, shared, rng).await,
        "audit" => audit(tx, shared, rng).await,
        "config" => config(tx, shared, rng).await,
        "delete_user" => delete_user(tx, shared, rng).await,
        other => unreachable!("no operation {other}"),
    }
}

async fn register(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    let (id, profile, token) = (new_id(rng), new_id(rng), new_id(rng));
    let hash = shared.lock().expect("load state").password_hash.clone();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'CUSTOMER', false, {now}, {now})"
    )))
    .bind(&id)
    .bind(format!("load-{id}@load.test"))
    .bind(hash)
    .bind(format!("Load {}", &id[..8]))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO user_profiles (id, user_id, preferences, created_at, updated_at) \
         VALUES ($1, $2, '{{\"theme\": \"light\"}}', {now}, {now})"
    )))
    .bind(&profile)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    insert_token(tx, &token, &id).await?;
    Ok(Some((
        vec![
            ins("users", 1),
            ins("user_profiles", 1),
            ins("refresh_tokens", 1),
        ],
        After::Registered(id),
    )))
}

async fn login(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let Some(user) = choose(shared, rng, |s| &s.payers) else {
        return Ok(None);
    };
    insert_token(tx, &new_id(rng), &user).await?;
    Ok(Some((vec![ins("refresh_tokens", 1)], After::Nothing)))
}

async fn logout(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    // One of the writer's own users' tokens (deleting a seeded one is fine too, but a
    // seeded user's token may already be gone).
    let Some((user, _)) = choose(shared, rng, |s| &s.own_users) else {
        return Ok(None);
    };
    let deleted = sqlx::query(
        "DELETE FROM refresh_tokens WHERE id = (SELECT id FROM refresh_tokens WHERE user_id = $1 LIMIT 1)",
    )
    .bind(&user)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Ok(None);
    }
    Ok(Some((vec![del("refresh_tokens", deleted)], After::Nothing)))
}

async fn pay(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    let Some(sender) = choose(shared, rng, |s| &s.payers) else {
        return Ok(None);
    };
    let Some(recipient) = choose(shared, rng, |s| &s.payers) else {
        return Ok(None);
    };
    let (id, history) = (new_id(rng), new_id(rng));
    let cents: i64 = rng.random_range(1..1_000_000);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, description, metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4::numeric / 100, 'USD', 'pending', 'instant', 'load', '{{\"source\": \"write-load\"}}', {now}, {now})"
    )))
    .bind(&id)
    .bind(&sender)
    .bind(&recipient)
    .bind(cents)
    .execute(&mut *tx)
    .await?;
    insert_history(tx, &history, &id, "pending").await?;
    Ok(Some((
        vec![ins("payments", 1), ins("payment_transactions", 1)],
        After::Paid(id),
    )))
}

async fn advance(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    let Some((id, status)) = choose(shared, rng, |s| &s.open_payments) else {
        return Ok(None);
    };
    let next = match status {
        "pending" => "processing",
        _ if rng.random_range(0..10) < 8 => "completed",
        _ => "failed",
    };
    let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE payments SET status = $2::text::\"PaymentStatus\", updated_at = {now}, \
         completed_at = CASE WHEN $2 = 'completed' THEN {now} END, \
         failure_reason = CASE WHEN $2 = 'failed' THEN 'declined by the load' END \
         WHERE id = $1 AND status = $3::text::\"PaymentStatus\""
    )))
    .bind(&id)
    .bind(next)
    .bind(status)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        // Another worker moved it first.
        return Ok(None);
    }
    insert_history(tx, &new_id(rng), &id, next).await?;
    Ok(Some((
        vec![upd("payments", 1), ins("payment_transactions", 1)],
        After::Advanced(id, next),
    )))
}

async fn profile_bio(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    let Some((user, _)) = choose(shared, rng, |s| &s.own_users) else {
        return Ok(None);
    };
    let bio = text(rng, BIG_BIO_CHARS);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE user_profiles SET bio = $2, updated_at = {now} WHERE user_id = $1"
    )))
    .bind(&user)
    .bind(bio)
    .execute(&mut *tx)
    .await?;
    Ok(Some((vec![upd("user_profiles", 1)], After::BigBio(user))))
}

async fn profile_phone(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    // Prefer a profile with a big bio: this update leaves the TOASTed bio unchanged.
    let chosen = {
        let state = shared.lock().expect("load state");
        let toasted: Vec<&String> = state
            .own_users
            .iter()
            .filter(|(_, big)| *big)
            .map(|(u, _)| u)
            .collect();
        if toasted.is_empty() {
            None
        } else {
            Some(toasted[rng.random_range(0..toasted.len())].clone())
        }
    };
    let Some(user) = chosen else { return Ok(None) };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE user_profiles SET phone = $2, updated_at = {now} WHERE user_id = $1"
    )))
    .bind(&user)
    .bind(format!("+4915{:09}", rng.random_range(0..1_000_000_000u64)))
    .execute(&mut *tx)
    .await?;
    Ok(Some((vec![upd("user_profiles", 1)], After::Nothing)))
}

async fn audit(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    let Some(user) = choose(shared, rng, |s| &s.payers) else {
        return Ok(None);
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, user_agent, created_at) \
         VALUES ($1, $2, 'user.login', 'user', $2, $3, '198.51.100.7', 'write-load/1.0', {now})"
    )))
    .bind(new_id(rng))
    .bind(&user)
    .bind(serde_json::json!({"source": "write-load", "n": rng.random_range(0..1_000_000)}))
    .execute(&mut *tx)
    .await?;
    Ok(Some((vec![ins("audit_logs", 1)], After::Nothing)))
}

async fn config(tx: &mut PgConnection, _shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let now = NOW;
    let key = format!("load.setting_{}", rng.random_range(0..5));
    let inserted: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "INSERT INTO system_config (key, value, description, updated_at, updated_by) \
         VALUES ($1, $2, 'written by the load', {now}, NULL) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at \
         RETURNING (xmax = 0)"
    )))
    .bind(&key)
    .bind(serde_json::json!({"n": rng.random_range(0..1_000_000)}))
    .fetch_one(&mut *tx)
    .await?;
    let counts = if inserted {
        ins("system_config", 1)
    } else {
        upd("system_config", 1)
    };
    Ok(Some((vec![counts], After::Nothing)))
}

async fn delete_user(tx: &mut PgConnection, shared: &Mutex<Shared>, rng: &mut StdRng) -> Outcome {
    let Some((user, _)) = choose(shared, rng, |s| &s.own_users) else {
        return Ok(None);
    };
    let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(&user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let profiles = sqlx::query("DELETE FROM user_profiles WHERE user_id = $1")
        .bind(&user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let users = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(&user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(Some((
        vec![
            del("refresh_tokens", tokens),
            del("user_profiles", profiles),
            del("users", users),
        ],
        After::Deleted(user),
    )))
}

async fn insert_token(tx: &mut PgConnection, id: &str, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, token, expires_at, created_at) \
         VALUES ($1, $2, 'load-' || $1, (clock_timestamp() AT TIME ZONE 'UTC') + interval '30 days', clock_timestamp() AT TIME ZONE 'UTC')",
    )
    .bind(id)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

async fn insert_history(
    tx: &mut PgConnection,
    id: &str,
    payment: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_transactions (id, payment_id, status, status_message, created_at) \
         VALUES ($1, $2, $3::text::\"PaymentStatus\", 'write-load', clock_timestamp() AT TIME ZONE 'UTC')",
    )
    .bind(id)
    .bind(payment)
    .bind(status)
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_are_picked_by_weight_and_reproducibly() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let picks: Vec<&str> = (0..1000).map(|_| pick(&mut a)).collect();
        let again: Vec<&str> = (0..1000).map(|_| pick(&mut b)).collect();
        assert_eq!(picks, again);
        for (kind, _) in KINDS {
            assert!(picks.contains(kind), "{kind} is played");
        }
    }

    #[test]
    fn ids_are_version_4_uuids() {
        let id = new_id(&mut StdRng::seed_from_u64(1));
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
