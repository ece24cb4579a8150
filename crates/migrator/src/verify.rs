//! `verify`: proves the service databases hold exactly the legacy rows.
//!
//! Each side computes, inside PostgreSQL, a count and an order-independent checksum (the sum of a
//! 64-bit hash of every row's full text) per bucket of keys; buckets are chosen by a hash of the key,
//! so both sides agree on them whatever their collations. Only buckets that differ are compared
//! row by row, which names the ids of the rows that changed, are missing or are extra. Then every
//! foreign key the split dropped is checked across databases for orphaned references.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use platform::Service;
use serde::Serialize;
use sqlx::PgConnection;

use crate::endpoints::Endpoints;
use crate::engine::check;
use crate::engine::connect;
pub use crate::engine::digest::Differences;
use crate::engine::digest::{bucket_sums, choose_hashing, diff_rows, row_digests};
use crate::engine::journal;
use crate::engine::journal::position;
use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use schema::contract::{FOREIGN_KEYS, ForeignKey, TABLES, Table};

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Ids listed per kind of difference and table; the counts are always complete.
    pub max_listed: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self { max_listed: 20 }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableVerify {
    pub table: &'static str,
    pub service: &'static str,
    pub legacy_rows: i64,
    pub target_rows: i64,
    pub buckets_differing: usize,
    pub differences: Differences,
    /// After a rollback: rows that differ because legacy's own foreign keys acted on a delete the
    /// services made (`mfe_rollback.cleared`): not differences.
    pub by_legacy_rules: u64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanCheck {
    pub foreign_key: &'static str,
    pub reference: String,
    /// Rows whose reference names no row of the referenced table.
    pub orphans: i64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub tables: Vec<TableVerify>,
    pub orphans: Vec<OrphanCheck>,
    pub ok: bool,
    pub seconds: f64,
    /// A capture slot exists: the legacy database may be taking writes, so rows that differed
    /// were checked again once sync had caught up, and only those that still differ count.
    pub live: bool,
    /// Rows checked again that way (in flight when first compared).
    pub rechecked: u64,
}

/// Differing keys a live verify checks again, at most, per table (more is not rows in flight).
const LIVE_RECHECK_MAX: usize = 100_000;

pub async fn verify(
    endpoints: &Endpoints,
    opts: &VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let differences = check::legacy_differences(&mut legacy).await?;
    if !differences.is_empty() {
        return Err(MigrateError::ContractMismatch(differences));
    }
    let live = crate::cdc::slot::info(&mut legacy).await?.is_some();
    drop(legacy);
    // Where each target's sync stood before comparing: a clean verify vouches for the rows the
    // sync changed up to there, so cutover need not verify them again.
    let mut synced_before = Vec::new();
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        synced_before.push(position::synced_position(&mut conn).await?);
    }
    let exempt = Arc::new(rolled_back_by_rules(endpoints).await?);
    let (mut tables, mut orphans) = compare_all(endpoints, opts, live, &exempt, progress).await?;
    let mut rechecked = 0;
    if live && tables.iter().any(|t| !t.ok) {
        let since: HashMap<&'static str, Option<crate::cdc::pgoutput::Lsn>> = Service::ALL
            .into_iter()
            .map(|s| s.name())
            .zip(synced_before.iter().copied())
            .collect();
        rechecked = recheck_live(endpoints, &mut tables, &since).await?;
    }
    if live && orphans.iter().any(|o| o.orphans > 0) {
        // A legacy transaction across services lands in their databases one after the other.
        crate::sync::catch_up(endpoints).await?;
        orphans = count_all_orphans(endpoints, opts.max_listed, &exempt).await?;
    }
    for t in &mut tables {
        t.differences.changed.truncate(opts.max_listed);
        t.differences.missing.truncate(opts.max_listed);
        t.differences.extra.truncate(opts.max_listed);
    }
    let ok = tables.iter().all(|t| t.ok) && orphans.iter().all(|o| o.orphans == 0);
    let report = VerifyReport {
        tables,
        orphans,
        ok,
        seconds: started.elapsed().as_secs_f64(),
        live,
        rechecked,
    };
    record(endpoints, &report, &synced_before).await?;
    Ok(report)
}

type Exempt = HashMap<String, HashMap<String, bool>>;

/// Every table compared, each on a task of its own, with the orphans counted beside them (the
/// two are independent). A live verify lists every differing key it may check again.
async fn compare_all(
    endpoints: &Endpoints,
    opts: &VerifyOptions,
    live: bool,
    exempt: &Arc<Exempt>,
    progress: Arc<dyn Progress>,
) -> Result<(Vec<TableVerify>, Vec<OrphanCheck>)> {
    let mut tasks = Vec::new();
    for table in TABLES {
        let endpoints = endpoints.clone();
        let exempt = exempt.clone();
        let mut opts = opts.clone();
        if live {
            opts.max_listed = opts.max_listed.max(LIVE_RECHECK_MAX);
        }
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let exempt = exempt.get(table.name).cloned().unwrap_or_default();
            verify_table(&endpoints, table, &opts, &exempt, progress.as_ref()).await
        }));
    }
    let orphan_task = {
        let (endpoints, max_listed) = (endpoints.clone(), opts.max_listed);
        let exempt = exempt.clone();
        tokio::spawn(async move { count_all_orphans(&endpoints, max_listed, &exempt).await })
    };
    let mut tables = Vec::new();
    for task in tasks {
        let table = task
            .await
            .map_err(|e| MigrateError::task("verify task", e))??;
        tables.push(table);
    }
    let orphans = orphan_task
        .await
        .map_err(|e| MigrateError::task("orphan check", e))??;
    Ok((tables, orphans))
}

/// The run in every journal; a clean one vouches for the rows the sync changed up to where each
/// target stood before comparing (`synced_before`), which cutover then need not verify again.
async fn record(
    endpoints: &Endpoints,
    report: &VerifyReport,
    synced_before: &[Option<crate::cdc::pgoutput::Lsn>],
) -> Result<()> {
    for (service, synced) in Service::ALL.into_iter().zip(synced_before.iter().copied()) {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        journal::ensure(&mut conn).await?;
        if report.ok
            && let Some(lsn) = synced
        {
            position::forget_touched(&mut conn, lsn).await?;
        }
        let outcome = if report.ok { "ok" } else { "differences" };
        let detail = serde_json::to_value(report).unwrap_or_default();
        journal::record_run(&mut conn, "verify", outcome, &detail).await?;
    }
    Ok(())
}

/// After a rollback (the migration's state says so): the rows legacy's own foreign keys changed
/// when the rollback wrote back a delete, by table: key -> whether a cascade removed it.
async fn rolled_back_by_rules(
    endpoints: &Endpoints,
) -> Result<HashMap<String, HashMap<String, bool>>> {
    let mut by_table: HashMap<String, HashMap<String, bool>> = HashMap::new();
    if crate::engine::journal::state::current(endpoints).await?
        != Some(crate::engine::journal::state::State::RolledBack)
    {
        return Ok(by_table);
    }
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let recorded: bool = sqlx::query_scalar(
        "SELECT to_regclass('mfe_rollback.cleared') IS NOT NULL \
         AND to_regclass('mfe_rollback.state') IS NOT NULL",
    )
    .fetch_one(&mut legacy)
    .await?;
    if !recorded {
        return Ok(by_table);
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_name, c.key, c.action FROM mfe_rollback.cleared c \
         JOIN mfe_rollback.state s ON s.cutover = c.cutover",
    )
    .fetch_all(&mut legacy)
    .await?;
    for (table, key, action) in rows {
        let cascade = action == "cascade";
        let entry = by_table.entry(table).or_default().entry(key).or_default();
        *entry |= cascade;
    }
    Ok(by_table)
}

async fn verify_table(
    endpoints: &Endpoints,
    table: &'static Table,
    opts: &VerifyOptions,
    exempt: &HashMap<String, bool>,
    progress: &dyn Progress,
) -> Result<TableVerify> {
    progress.table_step(table.name, "verifying");
    let target_url = endpoints.target(table.service);
    let (mut legacy, mut target) = tokio::try_join!(
        connect::connection("legacy", endpoints.legacy()),
        connect::connection(table.service.name(), target_url)
    )?;
    let hashing = choose_hashing(&mut legacy, &mut target).await?;
    let (source_buckets, target_buckets) = tokio::try_join!(
        bucket_sums(&mut legacy, table, hashing),
        bucket_sums(&mut target, table, hashing)
    )?;
    let legacy_rows: i64 = source_buckets.values().map(|(n, _)| n).sum();
    let target_rows: i64 = target_buckets.values().map(|(n, _)| n).sum();
    progress.table_started(table.name, legacy_rows as u64, 0);
    let mut differing: Vec<i32> = source_buckets
        .iter()
        .filter(|(b, v)| target_buckets.get(b) != Some(v))
        .map(|(b, _)| *b)
        .collect();
    differing.extend(
        target_buckets
            .keys()
            .filter(|b| !source_buckets.contains_key(b)),
    );
    differing.sort_unstable();
    differing.dedup();
    let mut differences = if differing.is_empty() {
        Differences::default()
    } else {
        diff_rows(
            &mut legacy,
            &mut target,
            table,
            hashing,
            &differing,
            opts.max_listed + exempt.len(),
        )
        .await?
    };
    let (by_legacy_rules, cascaded) = set_exempt_aside(&mut differences, exempt);
    differences.changed.truncate(opts.max_listed);
    differences.missing.truncate(opts.max_listed);
    differences.extra.truncate(opts.max_listed);
    progress.rows(table.name, legacy_rows as u64);
    progress.table_step(
        table.name,
        if differences.is_empty() {
            "verified"
        } else {
            "DIFFERENT"
        },
    );
    Ok(TableVerify {
        table: table.name,
        service: table.service.name(),
        legacy_rows,
        target_rows,
        buckets_differing: differing.len(),
        ok: differences.is_empty() && legacy_rows + cascaded == target_rows,
        differences,
        by_legacy_rules,
    })
}

/// Takes the rows legacy's own rules changed out of `d` when every differing key was listed
/// (else nothing is known of the unlisted ones, and all stay); returns how many were taken, and
/// how many of those a cascade removed from legacy only (the service database has one more).
fn set_exempt_aside(d: &mut Differences, exempt: &HashMap<String, bool>) -> (u64, i64) {
    let complete = d.changed_count + d.missing_count + d.extra_count
        == (d.changed.len() + d.missing.len() + d.extra.len()) as u64;
    if exempt.is_empty() || !complete {
        return (0, 0);
    }
    let before = d.changed.len() + d.missing.len() + d.extra.len();
    d.changed.retain(|k| !exempt.contains_key(k));
    let extra_before = d.extra.len();
    d.extra.retain(|k| !exempt.get(k).copied().unwrap_or(false));
    let cascaded = (extra_before - d.extra.len()) as i64;
    d.changed_count = d.changed.len() as u64;
    d.extra_count = d.extra.len() as u64;
    let after = d.changed.len() + d.missing.len() + d.extra.len();
    ((before - after) as u64, cascaded)
}

/// Rows that differed while the legacy database took writes: checked again, key by key, after
/// sync caught up (a few rounds, as writes go on); those that match were in flight. Returns how
/// many rows were checked again.
async fn recheck_live(
    endpoints: &Endpoints,
    tables: &mut [TableVerify],
    since: &HashMap<&'static str, Option<crate::cdc::pgoutput::Lsn>>,
) -> Result<u64> {
    let mut rechecked = 0u64;
    for _round in 0..3 {
        crate::sync::catch_up(endpoints).await?;
        let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
        let mut still = false;
        // Counts that differed while every differing bucket's rows matched: rows that arrived
        // between the two sides' reads. Counted again now that sync caught up.
        for t in tables
            .iter_mut()
            .filter(|t| !t.ok && t.differences.is_empty())
        {
            let (table, mut target) = target_of(endpoints, t).await?;
            t.legacy_rows = row_count(&mut legacy, table).await?;
            t.target_rows = row_count(&mut target, table).await?;
            t.ok = t.legacy_rows == t.target_rows;
            still |= !t.ok;
        }
        for t in tables.iter_mut().filter(|t| all_listed(&t.differences)) {
            let (table, mut target) = target_of(endpoints, t).await?;
            let d = &mut t.differences;
            let mut keys: Vec<String> = std::mem::take(&mut d.changed);
            keys.append(&mut d.missing);
            keys.append(&mut d.extra);
            rechecked += keys.len() as u64;
            let fresh = compare_keys(&mut legacy, &mut target, table, &keys).await?;
            // Counts first taken at different moments on a moving database are not compared.
            t.ok = fresh.is_empty();
            still |= !t.ok;
            t.differences = fresh;
        }
        if !still {
            return Ok(rechecked);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Rows the writers keep changing may differ at every look. Those the sync changed since this
    // verify began are not vouched for here: cutover verifies them inside its freeze (they stay
    // in `sync_changes`). A row that differs and was not changed is a real difference.
    crate::sync::catch_up(endpoints).await?;
    for t in tables.iter_mut().filter(|t| all_listed(&t.differences)) {
        let (table, mut target) = target_of(endpoints, t).await?;
        let after = since
            .get(table.service.name())
            .copied()
            .flatten()
            .unwrap_or_default();
        let touched: std::collections::HashSet<String> =
            position::touched_keys(&mut target, table.name, Some(after))
                .await?
                .into_iter()
                .collect();
        let d = &mut t.differences;
        let before = d.changed.len() + d.missing.len() + d.extra.len();
        d.changed.retain(|k| !touched.contains(k));
        d.missing.retain(|k| !touched.contains(k));
        d.extra.retain(|k| !touched.contains(k));
        d.changed_count = d.changed.len() as u64;
        d.missing_count = d.missing.len() as u64;
        d.extra_count = d.extra.len() as u64;
        tracing::debug!(
            table = t.table,
            in_flight = before - (d.changed.len() + d.missing.len() + d.extra.len()),
            "rows still changing, left to cutover's verify"
        );
        t.ok = d.is_empty();
    }
    Ok(rechecked)
}

/// Differences found, every one of them listed: more than could be listed are not rows in
/// flight, and the unlisted ones cannot be checked again (they are reported as they are).
fn all_listed(d: &Differences) -> bool {
    !d.is_empty()
        && d.changed_count + d.missing_count + d.extra_count
            == (d.changed.len() + d.missing.len() + d.extra.len()) as u64
}

/// The contract table `t` verified, and a connection to its service database.
async fn target_of(
    endpoints: &Endpoints,
    t: &TableVerify,
) -> Result<(&'static Table, PgConnection)> {
    let table = schema::contract::table(t.table).expect("contract table");
    let target = connect::connection(table.service.name(), endpoints.target(table.service)).await?;
    Ok((table, target))
}

/// `keys` of `table` compared row by row on both sides, now.
async fn compare_keys(
    legacy: &mut PgConnection,
    target: &mut PgConnection,
    table: &Table,
    keys: &[String],
) -> Result<Differences> {
    let mut fresh = Differences::default();
    for chunk in keys.chunks(5000) {
        let l = row_digests(&mut *legacy, table, chunk).await?;
        let r = row_digests(&mut *target, table, chunk).await?;
        for key in chunk {
            match (l.get(key), r.get(key)) {
                (Some(a), Some(b)) if a != b => {
                    fresh.changed.push(key.clone());
                    fresh.changed_count += 1;
                }
                (Some(_), None) => {
                    fresh.missing.push(key.clone());
                    fresh.missing_count += 1;
                }
                (None, Some(_)) => {
                    fresh.extra.push(key.clone());
                    fresh.extra_count += 1;
                }
                _ => {}
            }
        }
    }
    Ok(fresh)
}

async fn row_count(conn: &mut PgConnection, table: &Table) -> Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM public.{}",
        ident(table.name)
    )))
    .fetch_one(conn)
    .await?)
}

/// For every dropped cross-service foreign key, the references that name no row on the other
/// side. The referenced keys are streamed (binary COPY) into a temporary table beside the
/// referencing rows, once per pair of databases, and PostgreSQL counts with an anti-join: no sort
/// of the large side, no key set held in this process.
/// References that name no row on the other side, per foreign key the split dropped; after a
/// rollback, not those legacy's own `SET NULL` cleared (`exempt`: the service databases keep the
/// reference the services left).
async fn count_all_orphans(
    endpoints: &Endpoints,
    max_listed: usize,
    exempt: &HashMap<String, HashMap<String, bool>>,
) -> Result<Vec<OrphanCheck>> {
    let dropped: Vec<&'static ForeignKey> = FOREIGN_KEYS.iter().filter(|fk| !fk.kept).collect();
    let mut out = Vec::new();
    let mut pairs: Vec<(&'static Table, &'static str)> = Vec::new();
    for fk in &dropped {
        let from = schema::contract::table(fk.table).expect("contract table");
        if !pairs
            .iter()
            .any(|(t, r)| t.service == from.service && *r == fk.references)
        {
            pairs.push((from, fk.references));
        }
    }
    for (from, references) in pairs {
        let to = schema::contract::table(references).expect("contract table");
        let mut referencing =
            connect::connection(from.service.name(), endpoints.target(from.service)).await?;
        let fks: Vec<&'static ForeignKey> = dropped
            .iter()
            .copied()
            .filter(|fk| {
                fk.references == references
                    && schema::contract::table(fk.table).map(|t| t.service) == Some(from.service)
            })
            .collect();
        let keys = copy_referenced_keys(endpoints, &mut referencing, to, fks[0]).await?;
        for fk in fks {
            let set_aside: Vec<&String> = exempt
                .get(fk.table)
                .map(|keys| keys.keys().collect())
                .unwrap_or_default();
            out.push(orphans_of(&mut referencing, fk, &keys, &set_aside, max_listed).await?);
        }
    }
    // In contract order, whatever order the pairs ran in.
    out.sort_by_key(|o| dropped.iter().position(|fk| fk.name == o.foreign_key));
    Ok(out)
}

/// Streams the keys `fk` references in `to`'s service database (binary COPY) into a temporary
/// table beside the referencing rows; returns its name.
async fn copy_referenced_keys(
    endpoints: &Endpoints,
    referencing: &mut PgConnection,
    to: &Table,
    fk: &ForeignKey,
) -> Result<String> {
    let mut referenced =
        connect::connection(to.service.name(), endpoints.target(to.service)).await?;
    let keys = format!("mfe_verify_{}_keys", to.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TEMP TABLE {keys} (k text)"
    )))
    .execute(&mut *referencing)
    .await?;
    {
        let mut sink = referencing
            .copy_in_raw(&format!("COPY {keys} (k) FROM STDIN (FORMAT binary)"))
            .await?;
        let mut stream = referenced
            .copy_out_raw(&format!(
                "COPY (SELECT {} FROM public.{}) TO STDOUT (FORMAT binary)",
                ident(fk.referenced_column),
                ident(to.name)
            ))
            .await?;
        while let Some(bytes) = stream.try_next().await? {
            sink.send(bytes).await?;
        }
        sink.finish().await?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {keys}")))
        .execute(&mut *referencing)
        .await?;
    Ok(keys)
}

/// The references of `fk` that name no key in the temporary table `keys`, but those set aside.
async fn orphans_of(
    referencing: &mut PgConnection,
    fk: &ForeignKey,
    keys: &str,
    set_aside: &[&String],
    max_listed: usize,
) -> Result<OrphanCheck> {
    let child = schema::contract::table(fk.table).expect("contract table");
    let orphaned = format!(
        "FROM public.{t} x WHERE x.{c} IS NOT NULL AND NOT (x.{k} = ANY($1)) \
         AND NOT EXISTS (SELECT 1 FROM {keys} r WHERE r.k = x.{c})",
        t = ident(fk.table),
        c = ident(fk.column),
        k = ident(child.key)
    );
    let orphans: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) {orphaned}")))
            .bind(set_aside)
            .fetch_one(&mut *referencing)
            .await?;
    let examples: Vec<String> = if orphans > 0 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT x.{c} {orphaned} ORDER BY 1 LIMIT {max_listed}",
            c = ident(fk.column)
        )))
        .bind(set_aside)
        .fetch_all(referencing)
        .await?
    } else {
        Vec::new()
    };
    Ok(OrphanCheck {
        foreign_key: fk.name,
        reference: format!(
            "{}.{} -> {}.{}",
            fk.table, fk.column, fk.references, fk.referenced_column
        ),
        orphans,
        examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(changed: &[&str], missing: &[&str], extra: &[&str]) -> Differences {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Differences {
            changed: v(changed),
            missing: v(missing),
            extra: v(extra),
            changed_count: changed.len() as u64,
            missing_count: missing.len() as u64,
            extra_count: extra.len() as u64,
        }
    }

    #[test]
    fn rows_legacys_rules_changed_are_set_aside_and_nothing_else() {
        let exempt: HashMap<String, bool> = [
            ("cleared".to_string(), false),
            ("cascaded".to_string(), true),
        ]
        .into();
        let mut d = listed(&["cleared", "edited"], &["kept"], &["cascaded", "new"]);
        assert_eq!(set_exempt_aside(&mut d, &exempt), (2, 1));
        assert_eq!(d.changed, ["edited"]);
        assert_eq!(
            d.missing,
            ["kept"],
            "a row only legacy has is never set aside"
        );
        assert_eq!(d.extra, ["new"]);
        assert_eq!((d.changed_count, d.missing_count, d.extra_count), (1, 1, 1));
    }

    #[test]
    fn nothing_is_set_aside_when_some_differing_keys_were_not_listed() {
        let exempt: HashMap<String, bool> = [("cleared".to_string(), false)].into();
        let mut d = listed(&["cleared"], &[], &[]);
        d.changed_count = 5;
        assert_eq!(set_exempt_aside(&mut d, &exempt), (0, 0));
        assert_eq!(d.changed_count, 5);
    }
}
