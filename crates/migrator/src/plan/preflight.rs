//! `plan`'s preflight for a live migration, as AWS DMS's premigration assessments are: what the
//! servers must allow before `copy` makes a slot and `cutover` makes the way back, each reported
//! as ok, warn or fail with what to change.
//!
//! Facts are read from the servers ([`gather`]); the verdicts are a pure function of them
//! ([`assess`]), so each rule is tested on its own.

use std::time::Duration;

use platform::Service;
use serde::Serialize;
use sqlx::PgConnection;

use crate::cdc;
use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::error::Result;
use schema::contract::TABLES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub check: &'static str,
    /// The server or servers it concerns (`legacy`, `auth-service`, ...).
    pub server: String,
    pub level: Level,
    pub found: String,
    /// What to change, when it is not ok.
    pub fix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// A transaction open longer than this on the legacy server is reported.
    pub long_transaction: Duration,
    /// How long sync is expected to run before cutover: the WAL the slot keeps meanwhile.
    pub sync_hours: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            long_transaction: Duration::from_secs(300),
            sync_hours: 1.0,
        }
    }
}

/// The copy rate the disk estimate assumes (bytes of database per second), below what
/// docs/BENCHMARKS.md measured on 2 cores: the estimate errs on the side of more WAL.
pub const ASSUMED_COPY_BYTES_PER_SECOND: f64 = 20.0 * 1024.0 * 1024.0;

/// What one PostgreSQL server says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Server {
    /// The databases of the migration on it: `legacy`, service names.
    pub names: Vec<String>,
    /// Tells servers apart: two databases on one server share its slots and senders.
    pub identity: String,
    pub wal_level: String,
    pub max_slots: i64,
    /// Slots in use that are not the migration's own (those it would make again).
    pub other_slots: i64,
    pub max_senders: i64,
    pub other_senders: i64,
    /// `max_slot_wal_keep_size` in MB; -1 unbounded.
    pub keep_size_mb: i64,
}

/// What the legacy server says beyond [`Server`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Legacy {
    pub database_bytes: i64,
    /// WAL the server writes per second (all its databases), when known.
    pub wal_bytes_per_second: Option<f64>,
    /// Free bytes where the server keeps its WAL, when the server's disk is visible from here.
    pub free_disk_bytes: Option<u64>,
    /// (pid, database, seconds open) of the transactions open longer than the threshold.
    pub long_transactions: Vec<(i32, String, f64)>,
    /// (table, why it has no usable replica identity).
    pub without_identity: Vec<(String, String)>,
}

/// Reads the facts from the legacy server and the service databases' servers. A service database
/// not created yet is read through its server's `postgres` database.
pub async fn gather(endpoints: &Endpoints, opts: &Options) -> Result<(Vec<Server>, Legacy)> {
    let mut legacy_conn = connect::connection("legacy", endpoints.legacy()).await?;
    let mut servers: Vec<Server> = Vec::new();
    let ours = [
        cdc::slot::slot_of(&mut legacy_conn).await?,
        "mfe_rollback_%".to_string(),
    ];
    let legacy_server = server(&mut legacy_conn, "legacy", &ours).await?;
    servers.push(legacy_server);
    for service in Service::ALL {
        let url = endpoints.target(service);
        let mut conn = match crate::engine::journal::state::existing(service, url).await? {
            Some(conn) => conn,
            None => connect::connection(service.name(), &server_url(url)).await?,
        };
        let s = server(&mut conn, service.name(), &ours).await?;
        match servers.iter_mut().find(|x| x.identity == s.identity) {
            Some(same) => same.names.push(service.name().to_string()),
            None => servers.push(s),
        }
    }
    let legacy = legacy_facts(&mut legacy_conn, endpoints.legacy(), opts).await?;
    Ok((servers, legacy))
}

/// `url` with the database `postgres` instead of its own.
fn server_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path("/postgres");
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

async fn server(conn: &mut PgConnection, name: &str, ours: &[String; 2]) -> Result<Server> {
    // The system identifier when the role may read it, else where the session landed.
    let identity: String = match sqlx::query_scalar::<_, String>(
        "SELECT system_identifier::text FROM pg_control_system()",
    )
    .fetch_one(&mut *conn)
    .await
    {
        Ok(id) => id,
        Err(_) => {
            sqlx::query_scalar(
                "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || \
                 current_setting('port')",
            )
            .fetch_one(&mut *conn)
            .await?
        }
    };
    let (wal_level, max_slots, other_slots, max_senders, other_senders, keep_size_mb): (
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT current_setting('wal_level'), \
                current_setting('max_replication_slots')::bigint, \
                (SELECT count(*) FROM pg_replication_slots \
                  WHERE slot_name <> $1 AND slot_name NOT LIKE $2), \
                current_setting('max_wal_senders')::bigint, \
                (SELECT count(*) FROM pg_stat_replication r \
                  LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid \
                  WHERE s.slot_name IS NULL OR (s.slot_name <> $1 AND s.slot_name NOT LIKE $2)), \
                current_setting('max_slot_wal_keep_size')::bigint",
    )
    .bind(&ours[0])
    .bind(&ours[1])
    .fetch_one(&mut *conn)
    .await?;
    Ok(Server {
        names: vec![name.to_string()],
        identity,
        wal_level,
        max_slots,
        other_slots,
        max_senders,
        other_senders,
        keep_size_mb,
    })
}

async fn legacy_facts(conn: &mut PgConnection, url: &str, opts: &Options) -> Result<Legacy> {
    let database_bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut *conn)
        .await?;
    let long_transactions: Vec<(i32, String, f64)> = sqlx::query_as(
        "SELECT pid, coalesce(datname, ''), extract(epoch FROM now() - xact_start)::float8 \
         FROM pg_stat_activity \
         WHERE xact_start < now() - make_interval(secs => $1) AND pid <> pg_backend_pid() \
           AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) \
         ORDER BY xact_start LIMIT 20",
    )
    .bind(opts.long_transaction.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    let identities: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relreplident::text, \
                EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = ANY($1) ORDER BY 1",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let without_identity = identities
        .into_iter()
        .filter_map(|(table, kind, pk, index)| {
            let why = match kind.as_str() {
                "n" => Some("REPLICA IDENTITY NOTHING"),
                "d" if !pk => Some("no primary key (REPLICA IDENTITY DEFAULT)"),
                "i" if !index => Some("its replica identity index is gone"),
                _ => None,
            }?;
            Some((table, why.to_string()))
        })
        .collect();
    Ok(Legacy {
        database_bytes,
        wal_bytes_per_second: wal_rate(&mut *conn).await?,
        free_disk_bytes: free_disk(&mut *conn, url).await,
        long_transactions,
        without_identity,
    })
}

/// The server's WAL rate: its average since its statistics were reset when that is a while ago,
/// else sampled over a second.
async fn wal_rate(conn: &mut PgConnection) -> Result<Option<f64>> {
    let average: Option<(f64, f64)> = sqlx::query_as(
        "SELECT wal_bytes::float8, extract(epoch FROM now() - stats_reset)::float8 \
         FROM pg_stat_wal WHERE stats_reset < now() - interval '1 minute'",
    )
    .fetch_optional(&mut *conn)
    .await
    .unwrap_or(None);
    if let Some((bytes, seconds)) = average {
        return Ok(Some(bytes / seconds));
    }
    let lsn = "SELECT pg_current_wal_lsn()::text";
    let a: String = sqlx::query_scalar(lsn).fetch_one(&mut *conn).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b: String = sqlx::query_scalar(lsn).fetch_one(&mut *conn).await?;
    let diff: f64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8")
        .bind(&b)
        .bind(&a)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(diff.max(0.0)))
}

/// Free bytes under the server's `pg_wal`, when the server runs on this machine (its data
/// directory is readable here); `None` otherwise.
async fn free_disk(conn: &mut PgConnection, url: &str) -> Option<u64> {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    if !matches!(
        host.as_str(),
        "" | "localhost" | "127.0.0.1" | "[::1]" | "::1"
    ) {
        return None;
    }
    let dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(conn)
        .await
        .ok()?;
    free_bytes(&std::path::Path::new(&dir).join("pg_wal"))
}

fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `stat` a valid, writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1024.0 * 1024.0 * 1024.0))
}

/// The verdicts.
pub fn assess(servers: &[Server], legacy: &Legacy, opts: &Options) -> Vec<Check> {
    let mut checks = Vec::new();
    let window =
        legacy.database_bytes as f64 / ASSUMED_COPY_BYTES_PER_SECOND + opts.sync_hours * 3600.0;
    let expected_wal = legacy.wal_bytes_per_second.map(|rate| rate * window);
    for s in servers {
        let server = s.names.join(", ");
        let has_legacy = s.names.iter().any(|n| n == "legacy");
        checks.push(wal_level(s, &server, has_legacy));
        // A slot and a WAL sender for legacy's capture, and one per service database's way back.
        let needed = s.names.len() as i64;
        checks.extend(slots_and_senders(s, &server, needed));
        if has_legacy {
            checks.push(keep_size(s, &server, expected_wal));
        }
    }
    checks.push(long_transactions(legacy, opts));
    checks.push(replica_identity(legacy));
    checks.push(disk(legacy, expected_wal, window));
    checks
}

fn wal_level(s: &Server, server: &str, has_legacy: bool) -> Check {
    if s.wal_level == "logical" {
        return ok("wal_level", server, "logical");
    }
    let why = if has_legacy {
        "live sync decodes the legacy database's changes (without it, copy needs the writes \
         stopped, or `sync --method diff`)"
    } else {
        "cutover captures the way back there for a rollback"
    };
    fail(
        "wal_level",
        server,
        &s.wal_level,
        &format!("set wal_level = logical and restart the server: {why}"),
    )
}

fn slots_and_senders(s: &Server, server: &str, needed: i64) -> [Check; 2] {
    let free_slots = s.max_slots - s.other_slots;
    let found = format!(
        "{free_slots} free of max_replication_slots = {}; the migration needs {needed}",
        s.max_slots
    );
    let slots = if free_slots >= needed {
        ok("replication slots", server, &found)
    } else {
        fail(
            "replication slots",
            server,
            &found,
            &format!(
                "raise max_replication_slots to at least {} (a restart), or drop unused slots \
                 (pg_replication_slots)",
                s.other_slots + needed
            ),
        )
    };
    let free_senders = s.max_senders - s.other_senders;
    let found = format!(
        "{free_senders} free of max_wal_senders = {}; the migration needs {needed}",
        s.max_senders
    );
    let senders = if free_senders >= needed {
        ok("WAL senders", server, &found)
    } else {
        fail(
            "WAL senders",
            server,
            &found,
            &format!(
                "raise max_wal_senders to at least {} (a restart): sync streams over one, a \
                 rollback over one per service database",
                s.other_senders + needed
            ),
        )
    };
    [slots, senders]
}

fn long_transactions(legacy: &Legacy, opts: &Options) -> Check {
    if legacy.long_transactions.is_empty() {
        let found = format!(
            "none open longer than {} s",
            opts.long_transaction.as_secs()
        );
        return ok("long transactions", "legacy", &found);
    }
    let list: Vec<String> = legacy
        .long_transactions
        .iter()
        .map(|(pid, db, secs)| format!("pid {pid} in {db}, open {secs:.0} s"))
        .collect();
    warn(
        "long transactions",
        "legacy",
        &list.join("; "),
        "end them (or wait for them) before copy: making the capture slot waits for every \
         transaction open on the server, and they hold back vacuum meanwhile",
    )
}

fn replica_identity(legacy: &Legacy) -> Check {
    if legacy.without_identity.is_empty() {
        let found = format!(
            "the {} contract tables have a primary key or a replica identity",
            TABLES.len()
        );
        return ok("replica identity", "legacy", &found);
    }
    let list: Vec<String> = legacy
        .without_identity
        .iter()
        .map(|(t, why)| format!("{t}: {why}"))
        .collect();
    fail(
        "replica identity",
        "legacy",
        &list.join("; "),
        "give each a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL: with the table \
         published, legacy refuses its updates and deletes otherwise",
    )
}

fn keep_size(s: &Server, server: &str, expected_wal: Option<f64>) -> Check {
    let expected = expected_wal.map_or("unknown".to_string(), gib);
    if s.keep_size_mb < 0 {
        return warn(
            "max_slot_wal_keep_size",
            server,
            &format!("unbounded (-1); the slot may keep about {expected} over copy and sync"),
            "a slot nobody reads keeps WAL until the disk is full: watch `mfe migrate status` \
             (it warns past MFE_SLOT_WARN_GB), or bound it above the WAL expected",
        );
    }
    let keep = s.keep_size_mb as f64 * 1024.0 * 1024.0;
    let found = format!("{}; the slot may keep about {expected}", gib(keep));
    match expected_wal {
        Some(e) if e > keep => fail(
            "max_slot_wal_keep_size",
            server,
            &found,
            &format!(
                "raise it to at least {}: past it the server invalidates the slot, and sync \
                 cannot go on (the copy must start again)",
                gib(e * 1.5)
            ),
        ),
        _ => ok("max_slot_wal_keep_size", server, &found),
    }
}

fn disk(legacy: &Legacy, expected_wal: Option<f64>, window: f64) -> Check {
    let hours = window / 3600.0;
    match (expected_wal, legacy.free_disk_bytes) {
        (Some(wal), Some(free)) => {
            let found = format!(
                "{} free for pg_wal; about {} of WAL in the {hours:.1} h of copy and sync",
                gib(free as f64),
                gib(wal)
            );
            if wal > free as f64 {
                fail(
                    "disk for WAL",
                    "legacy",
                    &found,
                    "free space under pg_wal, or shorten the time between copy and cutover: the \
                     slot keeps every WAL segment written meanwhile",
                )
            } else if wal > free as f64 / 2.0 {
                warn(
                    "disk for WAL",
                    "legacy",
                    &found,
                    "the slot's WAL would take over half the free space: free some, or keep sync \
                     running (`sync --follow`) so that it does not fall behind",
                )
            } else {
                ok("disk for WAL", "legacy", &found)
            }
        }
        (wal, _) => warn(
            "disk for WAL",
            "legacy",
            &format!(
                "free space unknown (the server's disk is not visible from here); about {} of \
                 WAL in the {hours:.1} h of copy and sync",
                wal.map_or("an unknown amount".to_string(), gib)
            ),
            "check that the server's pg_wal has room for that much WAL",
        ),
    }
}

fn ok(check: &'static str, server: &str, found: &str) -> Check {
    Check {
        check,
        server: server.to_string(),
        level: Level::Ok,
        found: found.to_string(),
        fix: None,
    }
}

fn warn(check: &'static str, server: &str, found: &str, fix: &str) -> Check {
    Check {
        level: Level::Warn,
        fix: Some(fix.to_string()),
        ..ok(check, server, found)
    }
}

fn fail(check: &'static str, server: &str, found: &str, fix: &str) -> Check {
    Check {
        level: Level::Fail,
        fix: Some(fix.to_string()),
        ..ok(check, server, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(names: &[&str]) -> Server {
        Server {
            names: names.iter().map(|n| n.to_string()).collect(),
            identity: names.join(","),
            wal_level: "logical".into(),
            max_slots: 10,
            other_slots: 0,
            max_senders: 10,
            other_senders: 0,
            keep_size_mb: -1,
        }
    }

    fn legacy() -> Legacy {
        Legacy {
            database_bytes: 1 << 30,
            wal_bytes_per_second: Some(1024.0 * 1024.0),
            free_disk_bytes: Some(100 << 30),
            ..Legacy::default()
        }
    }

    fn level(checks: &[Check], check: &str, server: &str) -> Level {
        checks
            .iter()
            .find(|c| c.check == check && c.server == server)
            .unwrap_or_else(|| panic!("{check} on {server}: {checks:#?}"))
            .level
    }

    #[test]
    fn a_ready_platform_passes_but_for_an_unbounded_slot() {
        let checks = assess(
            &[
                server(&["legacy", "auth-service"]),
                server(&["payments-service"]),
            ],
            &legacy(),
            &Options::default(),
        );
        for c in &checks {
            let expected = if c.check == "max_slot_wal_keep_size" {
                Level::Warn
            } else {
                Level::Ok
            };
            assert_eq!(c.level, expected, "{c:?}");
            assert_eq!(c.fix.is_some(), expected != Level::Ok, "{c:?}");
        }
    }

    #[test]
    fn wal_level_below_logical_fails_on_every_server_of_the_migration() {
        let mut l = server(&["legacy"]);
        l.wal_level = "replica".into();
        let mut p = server(&["payments-service"]);
        p.wal_level = "replica".into();
        let checks = assess(&[l, p], &legacy(), &Options::default());
        assert_eq!(level(&checks, "wal_level", "legacy"), Level::Fail);
        assert_eq!(level(&checks, "wal_level", "payments-service"), Level::Fail);
    }

    #[test]
    fn slots_and_senders_count_every_database_of_the_migration_on_a_server() {
        let mut s = server(&["legacy", "auth-service"]);
        s.max_slots = 3;
        s.other_slots = 2;
        s.max_senders = 4;
        s.other_senders = 2;
        let checks = assess(&[s], &legacy(), &Options::default());
        let slots = checks
            .iter()
            .find(|c| c.check == "replication slots")
            .unwrap();
        assert_eq!(slots.level, Level::Fail);
        assert!(
            slots.fix.as_deref().unwrap().contains("at least 4"),
            "{slots:?}"
        );
        assert_eq!(
            level(&checks, "WAL senders", "legacy, auth-service"),
            Level::Ok
        );
    }

    #[test]
    fn a_keep_size_below_the_wal_expected_fails_and_above_it_passes() {
        let mut s = server(&["legacy"]);
        s.keep_size_mb = 1024;
        let checks = assess(std::slice::from_ref(&s), &legacy(), &Options::default());
        assert_eq!(
            level(&checks, "max_slot_wal_keep_size", "legacy"),
            Level::Fail,
            "1 MiB/s for over an hour is more than 1 GiB"
        );
        s.keep_size_mb = 64 * 1024;
        let checks = assess(&[s], &legacy(), &Options::default());
        assert_eq!(
            level(&checks, "max_slot_wal_keep_size", "legacy"),
            Level::Ok
        );
    }

    #[test]
    fn long_transactions_warn_and_tables_without_identity_fail() {
        let mut l = legacy();
        l.long_transactions = vec![(42, "mfe_poc2".into(), 900.0)];
        l.without_identity = vec![("audit_logs".into(), "REPLICA IDENTITY NOTHING".into())];
        let checks = assess(&[server(&["legacy"])], &l, &Options::default());
        let long = checks
            .iter()
            .find(|c| c.check == "long transactions")
            .unwrap();
        assert_eq!(long.level, Level::Warn);
        assert!(long.found.contains("pid 42"), "{long:?}");
        let identity = checks
            .iter()
            .find(|c| c.check == "replica identity")
            .unwrap();
        assert_eq!(identity.level, Level::Fail);
        assert!(identity.found.contains("audit_logs"), "{identity:?}");
    }

    #[test]
    fn the_disk_must_hold_the_wal_of_copy_and_sync() {
        let mut l = legacy();
        l.free_disk_bytes = Some(1 << 30);
        let checks = assess(&[server(&["legacy"])], &l, &Options::default());
        assert_eq!(level(&checks, "disk for WAL", "legacy"), Level::Fail);
        l.free_disk_bytes = Some(6 << 30);
        let checks = assess(&[server(&["legacy"])], &l, &Options::default());
        assert_eq!(level(&checks, "disk for WAL", "legacy"), Level::Warn);
        l.free_disk_bytes = None;
        let checks = assess(&[server(&["legacy"])], &l, &Options::default());
        let disk = checks.iter().find(|c| c.check == "disk for WAL").unwrap();
        assert_eq!(disk.level, Level::Warn);
        assert!(disk.found.contains("unknown"), "{disk:?}");
    }
}
