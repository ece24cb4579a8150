//! Several PostgreSQL servers in one URL, as libpq takes them
//! (`postgresql://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write`): a pool is made on the
//! first server, in the URL's order, that answers and has the wanted attributes, and follows a
//! failover to another one without a restart (see [`follow`]).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, PgConnection};

/// What the server of a session must be: libpq's `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    /// Accepts writes by default (`transaction_read_only` off).
    ReadWrite,
    ReadOnly,
    /// Not in recovery.
    Primary,
    /// In recovery.
    Standby,
}

impl SessionAttrs {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            other => {
                return Err(format!(
                    "target_session_attrs={other} is not supported (any, read-write, read-only, \
                     primary, standby)"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
        }
    }

    fn accepts(self, in_recovery: bool, read_only: bool) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !read_only,
            Self::ReadOnly => read_only,
            Self::Primary => !in_recovery,
            Self::Standby => in_recovery,
        }
    }

    /// Whether the server `conn` is on suits; `Err` names what it is instead.
    pub(crate) async fn check(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        if self == Self::Any {
            return Ok(());
        }
        let (in_recovery, read_only): (bool, bool) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
        )
        .fetch_one(conn)
        .await?;
        if self.accepts(in_recovery, read_only) {
            Ok(())
        } else {
            Err(sqlx::Error::Configuration(
                format!(
                    "the server is {} (target_session_attrs={})",
                    if in_recovery {
                        "a standby"
                    } else if read_only {
                        "read-only"
                    } else {
                        "a read-write primary"
                    },
                    self.name()
                )
                .into(),
            ))
        }
    }
}

/// A URL's servers, in its order, and what a session needs of the one it is made on.
#[derive(Debug, Clone)]
pub struct Servers {
    pub hosts: Vec<PgConnectOptions>,
    pub attrs: SessionAttrs,
}

/// Parses a PostgreSQL URL with one server or a comma-separated list of them. The error says
/// what is wrong without echoing the URL (it may hold a password).
pub fn parse(url: &str) -> Result<Servers, String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "postgres" | "postgresql"))
        .ok_or("expected a postgres:// or postgresql:// URL")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_list) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut attrs = SessionAttrs::Any;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("target_session_attrs=") {
            Some(value) => attrs = SessionAttrs::parse(value)?,
            None => kept.push(pair),
        }
    }
    let tail = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let hosts = host_list
        .split(',')
        .map(|host| {
            if host.is_empty() && host_list.contains(',') {
                return Err("the list of servers has an empty entry".to_string());
            }
            PgConnectOptions::from_str(&format!("{scheme}://{userinfo}{host}{tail}"))
                .map_err(|e| format!("not a valid PostgreSQL URL ({e})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Servers { hosts, attrs })
}

/// How long finding a server waits for each one to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

impl Servers {
    /// Whether a pool on these servers must follow failovers (more than one, or a requirement).
    pub fn several(&self) -> bool {
        self.hosts.len() > 1 || self.attrs != SessionAttrs::Any
    }

    /// The first server, in the URL's order, that answers and suits; the error says why each
    /// did not.
    pub async fn find(&self) -> sqlx::Result<usize> {
        let mut why = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let tried = tokio::time::timeout(ANSWER_WITHIN, async {
                let mut conn = host.connect().await?;
                let checked = self.attrs.check(&mut conn).await;
                let _ = sqlx::Connection::close(conn).await;
                checked
            })
            .await;
            match tried {
                Ok(Ok(())) => return Ok(i),
                Ok(Err(e)) => why.push(format!("{}: {e}", describe(host))),
                Err(_) => why.push(format!(
                    "{}: no answer in {ANSWER_WITHIN:?}",
                    describe(host)
                )),
            }
        }
        if self.hosts.len() == 1 && self.attrs == SessionAttrs::Any {
            // One server and no requirement: its own error, as a plain connect would give.
            return Err(sqlx::Error::Configuration(why.join("; ").into()));
        }
        Err(sqlx::Error::Configuration(
            format!("no server suits: {}", why.join("; ")).into(),
        ))
    }
}

/// A server's address, for logs: never its password.
pub fn describe(host: &PgConnectOptions) -> String {
    format!("{}:{}", host.get_host(), host.get_port())
}

/// When the pool last moved to another server, so the connections made before are let go.
#[derive(Debug)]
pub(crate) struct Moved {
    since: Instant,
    /// Milliseconds from `since` to the last move; 0 before the first.
    at_ms: AtomicU64,
}

impl Moved {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            since: Instant::now(),
            at_ms: AtomicU64::new(0),
        })
    }

    fn now(&self) {
        let ms = self.since.elapsed().as_millis().max(1) as u64;
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether a connection `age` old was made before the last move.
    pub(crate) fn made_before(&self, age: Duration) -> bool {
        let at = self.at_ms.load(Ordering::Relaxed);
        at != 0
            && age
                > self
                    .since
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at))
    }
}

/// How often a pool on several servers checks that its server still suits.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Watches the server `pool` is on (`current` of `servers`): when it stops answering or no longer
/// suits (a primary stopped, or demoted while a standby was promoted), finds the first that
/// suits and points the pool's new connections there; the connections made before are dropped
/// as they come back ([`Moved`]). Ends when the pool is closed.
pub(crate) async fn follow(pool: PgPool, servers: Servers, mut current: usize, moved: Arc<Moved>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        let suits = tokio::time::timeout(ANSWER_WITHIN, async {
            let mut conn = pool.acquire().await?;
            servers.attrs.check(&mut conn).await
        })
        .await;
        if matches!(suits, Ok(Ok(()))) {
            continue;
        }
        match servers.find().await {
            Ok(found) => {
                tracing::warn!(
                    from = %describe(&servers.hosts[current]),
                    to = %describe(&servers.hosts[found]),
                    "the database server no longer suits: new connections go to another"
                );
                pool.set_connect_options(super::logged(servers.hosts[found].clone()));
                moved.now();
                current = found;
            }
            Err(e) => tracing::warn!(error = %e, "no database server suits for now"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_parses_as_a_plain_url() {
        let s = parse("postgresql://u:secret@db.example:5433/auth_db?sslmode=disable").unwrap();
        assert_eq!(s.hosts.len(), 1);
        assert_eq!(s.attrs, SessionAttrs::Any);
        assert_eq!(s.hosts[0].get_host(), "db.example");
        assert_eq!(s.hosts[0].get_port(), 5433);
        assert_eq!(s.hosts[0].get_database(), Some("auth_db"));
        assert!(!s.several());
    }

    #[test]
    fn a_list_of_servers_keeps_its_order_credentials_database_and_parameters() {
        let s = parse(
            "postgresql://u:secret@10.0.0.1:5801,10.0.0.2:5802/payments_db?target_session_attrs=read-write&application_name=pay",
        )
        .unwrap();
        assert_eq!(s.attrs, SessionAttrs::ReadWrite);
        let hosts: Vec<_> = s.hosts.iter().map(describe).collect();
        assert_eq!(hosts, ["10.0.0.1:5801", "10.0.0.2:5802"]);
        for h in &s.hosts {
            assert_eq!(h.get_database(), Some("payments_db"));
            assert_eq!(h.get_username(), "u");
            assert_eq!(h.get_application_name(), Some("pay"));
        }
        assert!(s.several());
    }

    #[test]
    fn a_requirement_alone_makes_a_pool_follow_its_server() {
        let s = parse("postgres://localhost/db?target_session_attrs=primary").unwrap();
        assert_eq!(s.attrs, SessionAttrs::Primary);
        assert!(s.several());
    }

    #[test]
    fn bad_lists_and_attributes_are_refused_without_echoing_the_password() {
        for bad in [
            "postgresql://u:hunter2@a:1,,b:2/db",
            "postgresql://u:hunter2@a:1,b:2/db?target_session_attrs=prefer-standby",
            "postgresql://u:hunter2@a:notaport,b:2/db",
            "mysql://u:hunter2@a/db",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn each_attribute_accepts_the_servers_it_names() {
        use SessionAttrs::*;
        // (in recovery, read-only): a primary, a read-only primary, a standby.
        let kinds = [(false, false), (false, true), (true, true)];
        let accepted = |a: SessionAttrs| kinds.map(|(r, o)| a.accepts(r, o));
        assert_eq!(accepted(Any), [true, true, true]);
        assert_eq!(accepted(ReadWrite), [true, false, false]);
        assert_eq!(accepted(ReadOnly), [false, true, true]);
        assert_eq!(accepted(Primary), [true, true, false]);
        assert_eq!(accepted(Standby), [false, false, true]);
    }

    #[test]
    fn a_connection_is_let_go_only_when_made_before_the_last_move() {
        let moved = Moved::new();
        assert!(!moved.made_before(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        moved.now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(moved.made_before(Duration::from_millis(35)));
        assert!(!moved.made_before(Duration::from_millis(5)));
    }
}
