//! Cutover's verify of what the sync changed: before the freeze, in passes while writes go on
//! ([`look_ahead`]); inside it, what changed after the last pass and every table's row count on
//! both sides ([`sync_and_verify`]).

use std::time::Instant;

use platform::Service;
use sqlx::PgConnection;

use super::FailedStep;
use crate::cdc::pgoutput::Lsn;
use crate::cdc::slot;
use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use crate::sync;
use schema::contract::{TABLES, Table};

/// What [`verify_ahead`] found, per service: the position it compared up to, whether each table
/// was compared, and the keys that differed then (rows in flight, or a real difference).
#[derive(Debug, Default)]
pub(super) struct Ahead {
    upto: Vec<(Service, Lsn)>,
    /// Tables whose changed rows were not compared ahead (truncated since the last verify).
    whole: Vec<&'static str>,
    differed: Vec<(&'static str, String)>,
}

impl Ahead {
    /// `keys` with the keys of `table` that differed in the last pass, each once.
    fn add_differed(&self, table: &str, keys: &mut Vec<String>) {
        keys.extend(
            self.differed
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, k)| k.clone()),
        );
        keys.sort_unstable();
        keys.dedup();
    }

    fn upto_of(&self, service: Service) -> Option<Lsn> {
        self.upto
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, lsn)| *lsn)
    }
}

/// Rows left for the freeze below which the look ahead stops.
const LEFT_FOR_THE_FREEZE: u64 = 5_000;

/// Passes of [`verify_ahead`], each after a catch-up, until one compares few rows: the first
/// compares every row changed since the last verify (seconds at scale), the next what changed
/// meanwhile, and so on, as the writes allow.
pub(super) async fn look_ahead(endpoints: &Endpoints) -> Result<Ahead> {
    // First: the passes after it then compare what changed while it ran.
    vacuum_for_the_counts(endpoints).await?;
    let mut ahead = Ahead::default();
    for pass in 0..5 {
        if pass > 0 {
            sync::catch_up(endpoints).await?;
        }
        if verify_ahead(endpoints, &mut ahead).await? < LEFT_FOR_THE_FREEZE {
            break;
        }
    }
    Ok(ahead)
}

/// VACUUM of every contract table on both sides, before the look ahead: a count then reads the
/// index alone on every page the writes have not touched since (an index-only scan falls back to
/// the table on pages not marked all-visible). At scale 10 under the burst the counts inside the
/// freeze took 2 s, payment_transactions' alone 0.6 s, 0.35 s once vacuumed. Tables another
/// vacuum holds are skipped; a role that may not vacuum a table gets a warning, not an error.
async fn vacuum_for_the_counts(endpoints: &Endpoints) -> Result<()> {
    let t = Instant::now();
    let vacuum = |which: &'static str, url: &str, tables: Vec<&'static Table>| {
        let url = url.to_string();
        async move {
            let mut conn = connect::connection(which, &url).await?;
            let list: Vec<String> = tables
                .iter()
                .map(|t| format!("public.{}", ident(t.name)))
                .collect();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM (SKIP_LOCKED) {}",
                list.join(", ")
            )))
            .execute(&mut conn)
            .await?;
            Ok::<_, MigrateError>(())
        }
    };
    let mut sides = vec![vacuum(
        "legacy",
        endpoints.legacy(),
        TABLES.iter().collect(),
    )];
    for service in Service::ALL {
        sides.push(vacuum(
            service.name(),
            endpoints.target(service),
            TABLES.iter().filter(|t| t.service == service).collect(),
        ));
    }
    futures::future::try_join_all(sides).await?;
    tracing::debug!(
        secs = t.elapsed().as_secs_f64(),
        "cutover: tables vacuumed for the counts"
    );
    Ok(())
}

/// While writes go on: every row the sync changed after the last pass's position (all, the
/// first time) up to each service database's current position, and the rows that differed in the
/// last pass, compared on both sides. A row equal now needs no look inside the freeze unless it
/// changes again (it is then among the rows changed after that position); one that differs now
/// is looked at again. Returns how many rows it compared.
async fn verify_ahead(endpoints: &Endpoints, ahead: &mut Ahead) -> Result<u64> {
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let slot = slot::slot_of(&mut legacy).await?;
    let mut compared = 0u64;
    let mut differed = Vec::new();
    for service in Service::ALL {
        let mut target = connect::connection(service.name(), endpoints.target(service)).await?;
        let upto = crate::engine::journal::position::position(&mut target, &slot)
            .await?
            .unwrap_or_default();
        let after = ahead.upto_of(service).unwrap_or_default();
        for table in TABLES.iter().filter(|t| t.service == service) {
            if ahead.whole.contains(&table.name) {
                continue;
            }
            let mut keys = crate::engine::journal::position::touched_keys_between(
                &mut target,
                table.name,
                after,
                upto,
            )
            .await?;
            if keys.iter().any(|k| k == "*") {
                ahead.whole.push(table.name);
                continue;
            }
            ahead.add_differed(table.name, &mut keys);
            compared += keys.len() as u64;
            for key in differing(&mut legacy, &mut target, table, &keys).await? {
                differed.push((table.name, key));
            }
        }
        ahead.upto.retain(|(s, _)| *s != service);
        ahead.upto.push((service, upto));
    }
    ahead.differed = differed;
    Ok(compared)
}

/// The service databases' connections the verify inside the freeze uses, opened before it: a
/// connection costs its server a fork and a cold catalog cache, and the freeze paid that about
/// thirty times. Legacy's cannot be opened ahead: the freeze ends every session there.
pub(super) struct TargetConnections {
    /// One per table, for its row count.
    count: Vec<(&'static Table, PgConnection)>,
    /// One per service, for its changed rows.
    compare: Vec<(Service, PgConnection)>,
}

impl TargetConnections {
    pub(super) async fn open(endpoints: &Endpoints) -> Result<Self> {
        let count = futures::future::try_join_all(TABLES.iter().map(|table| async move {
            let url = endpoints.target(table.service);
            Ok::<_, MigrateError>((table, connect::connection(table.service.name(), url).await?))
        }))
        .await?;
        let compare = futures::future::try_join_all(Service::ALL.map(|service| async move {
            let url = endpoints.target(service);
            Ok::<_, MigrateError>((service, connect::connection(service.name(), url).await?))
        }))
        .await?;
        Ok(Self { count, compare })
    }
}

/// What [`sync_and_verify`] did.
pub(super) struct Verified {
    /// Legacy transactions the sync to the marker applied.
    pub transactions: u64,
    /// Rows compared on both sides.
    pub rows: u64,
    pub sync_secs: f64,
    pub verify_secs: f64,
}

/// Inside the freeze, once the marker is written: the sync up to it, and meanwhile legacy's row
/// counts (legacy is frozen, so they are final); then the service databases' counts and every
/// row the sync changed that [`look_ahead`] did not find equal, compared on both sides. All run
/// at once, each on a connection of its own. A failure names its step.
pub(super) async fn sync_and_verify(
    endpoints: &Endpoints,
    progress: &dyn Progress,
    marker: String,
    ahead: &Ahead,
    mut targets: TargetConnections,
) -> std::result::Result<Verified, FailedStep> {
    let t = Instant::now();
    let legacy_counts = async {
        let counted = count_legacy(endpoints).await;
        tracing::debug!(
            secs = t.elapsed().as_secs_f64(),
            "cutover verify: legacy's row counts"
        );
        counted
    };
    let synced_then_compared = async {
        let sync = async {
            super::sync_to_marker(endpoints, progress, marker)
                .await
                .map_err(|e| ("sync to the marker", e))
        };
        let open = async {
            open_legacy(endpoints, Service::ALL.len())
                .await
                .map_err(|e| ("verify", e))
        };
        let (transactions, legacy) = tokio::try_join!(sync, open)?;
        let sync_secs = t.elapsed().as_secs_f64();
        progress.table_step("cutover", "verifying what changed");
        let counts = async {
            let counted = count_targets(&mut targets.count).await;
            tracing::debug!(
                secs = t.elapsed().as_secs_f64(),
                "cutover verify: the service databases' row counts"
            );
            counted
        };
        let rows = async {
            let pairs = legacy.into_iter().zip(targets.compare.iter_mut());
            let compared = futures::future::try_join_all(pairs.map(
                |(mut legacy, (service, target))| async move {
                    compare_touched(&mut legacy, target, ahead, *service).await
                },
            ))
            .await;
            tracing::debug!(
                secs = t.elapsed().as_secs_f64(),
                "cutover verify: changed rows"
            );
            compared
        };
        let (counts, compared) = tokio::try_join!(counts, rows).map_err(|e| ("verify", e))?;
        Ok((transactions, sync_secs, counts, compared))
    };
    let (legacy_counts, rest) = tokio::join!(legacy_counts, synced_then_compared);
    let (transactions, sync_secs, target_counts, compared) = rest?;
    let legacy_counts = legacy_counts.map_err(|e| ("verify", e))?;

    let mut differences = count_differences(&legacy_counts, &target_counts);
    let mut rows = 0u64;
    for (n, found) in compared {
        rows += n;
        differences.extend(found);
    }
    if !differences.is_empty() {
        let n = differences.len();
        differences.truncate(10);
        return Err((
            "verify",
            MigrateError::Diverged(format!(
                "{n} changed rows differ between the legacy and the service databases (first: {})",
                differences.join(", ")
            )),
        ));
    }
    Ok(Verified {
        transactions,
        rows,
        sync_secs,
        verify_secs: t.elapsed().as_secs_f64() - sync_secs,
    })
}

/// `n` connections to legacy, opened at once.
async fn open_legacy(endpoints: &Endpoints, n: usize) -> Result<Vec<PgConnection>> {
    futures::future::try_join_all((0..n).map(|_| connect::connection("legacy", endpoints.legacy())))
        .await
}

/// A table's row count.
type Count = (&'static str, i64);

/// Every table's row count in legacy, all at once.
async fn count_legacy(endpoints: &Endpoints) -> Result<Vec<Count>> {
    let conns = open_legacy(endpoints, TABLES.len()).await?;
    futures::future::try_join_all(
        TABLES
            .iter()
            .zip(conns)
            .map(
                |(table, mut conn)| async move { Ok((table.name, count(&mut conn, table).await?)) },
            ),
    )
    .await
}

/// Every table's row count in its service database, all at once.
async fn count_targets(conns: &mut [(&'static Table, PgConnection)]) -> Result<Vec<Count>> {
    futures::future::try_join_all(
        conns
            .iter_mut()
            .map(|(table, conn)| async move { Ok((table.name, count(conn, table).await?)) }),
    )
    .await
}

/// One table's count. Serial: fourteen counts run at once on two sides, and parallel workers
/// on top of them would only contend for the same cores.
async fn count(conn: &mut PgConnection, table: &Table) -> Result<i64> {
    sqlx::raw_sql("SET max_parallel_workers_per_gather = 0")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM public.{}",
        ident(table.name)
    )))
    .fetch_one(conn)
    .await?)
}

/// The tables whose counts differ: a change the stream lost, or a row lost where the sync never
/// wrote, is not among the touched rows; the counts catch it.
fn count_differences(legacy: &[Count], targets: &[Count]) -> Vec<String> {
    let of = |counts: &[Count], table: &str| {
        counts
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    };
    TABLES
        .iter()
        .filter_map(|table| {
            let (l, t) = (of(legacy, table.name), of(targets, table.name));
            (l != t).then(|| format!("{} ({l} rows in legacy, {t} here)", table.name))
        })
        .collect()
}

/// The comparison inside the freeze of `service`'s tables: how many rows were compared, and
/// those that differ.
async fn compare_touched(
    legacy: &mut PgConnection,
    target: &mut PgConnection,
    ahead: &Ahead,
    service: Service,
) -> Result<(u64, Vec<String>)> {
    let mut compared = 0u64;
    let mut differences = Vec::new();
    for table in TABLES.iter().filter(|t| t.service == service) {
        let after = ahead
            .upto_of(service)
            .filter(|_| !ahead.whole.contains(&table.name));
        let mut keys =
            crate::engine::journal::position::touched_keys(&mut *target, table.name, after).await?;
        if after.is_some() {
            ahead.add_differed(table.name, &mut keys);
        }
        if keys.iter().any(|k| k == "*") {
            let (l, t) = (
                table_digest(&mut *legacy, table).await?,
                table_digest(&mut *target, table).await?,
            );
            compared += 1;
            if l != t {
                differences.push(format!("{} (whole table, truncated since)", table.name));
            }
            continue;
        }
        compared += keys.len() as u64;
        for key in differing(&mut *legacy, &mut *target, table, &keys).await? {
            differences.push(format!("{} {key}", table.name));
        }
    }
    Ok((compared, differences))
}

async fn differing(
    legacy: &mut PgConnection,
    target: &mut PgConnection,
    table: &Table,
    keys: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(5000) {
        let (l, t) = tokio::try_join!(
            crate::engine::digest::row_digests(&mut *legacy, table, chunk),
            crate::engine::digest::row_digests(&mut *target, table, chunk),
        )?;
        out.extend(chunk.iter().filter(|k| l.get(*k) != t.get(*k)).cloned());
    }
    Ok(out)
}

async fn table_digest(conn: &mut PgConnection, table: &Table) -> Result<String> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(md5(string_agg(md5(ROW({cols})::text), '' ORDER BY {key} COLLATE \"C\")), '') FROM public.{t}",
        key = ident(table.key),
        cols = table.column_list(),
        t = ident(table.name)
    )))
    .fetch_one(conn)
    .await?)
}
