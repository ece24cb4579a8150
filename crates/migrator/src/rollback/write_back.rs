//! Steps 3 to 5 of a rollback, in one legacy transaction: the write-back of every changed row,
//! by legacy's own rules, what it could not write recorded as conflicts, and the verify that
//! commits it or rolls it all back.
//!
//! Order: rows nothing points to are deleted first (children before parents), so a unique value
//! they free can be taken; then every present row is upserted, parents before children; then the
//! parents gone from their service database are deleted where no row points to them any more;
//! rows refused on the way (a unique value still held, a parent not there yet) are tried again
//! until a round changes nothing. What remains is a conflict.

use std::time::Instant;

use platform::Service;
use sqlx::{Connection, PgConnection};

use super::rules::{self, Acted, Rules};
use super::{
    AHEAD, CHUNK, Conflict, Fetcher, Lap, Refused, RollbackReport, Services, WrittenBack, census,
    changed_keys, compare_fetched, delete_absent, is_parent, key_of, read_way_back,
    record_conflicts, retry, service_conn, upsert, why_kept, write_chunk,
};
use crate::endpoints::Endpoints;
use crate::engine::freeze;
use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use crate::rollback::way_back as back;
use schema::contract::{TABLES, Table};

pub(super) async fn write_back(
    endpoints: &Endpoints,
    progress: &dyn Progress,
    legacy: &mut PgConnection,
    services: &mut Services,
    steps: &mut Vec<(String, f64)>,
) -> Result<()> {
    let t = Instant::now();
    progress.table_step("rollback", "reading the way back");
    let mut tx = legacy.begin().await?;
    let census = read_changes(endpoints, &mut tx, services).await?;
    let rules = Rules::read(&mut tx).await?;
    steps.push(("read the changes".into(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    progress.table_step("rollback", "writing back");
    let mut lap = Lap::default();
    let cutover = super::record::cutover_of(&mut tx).await?;
    stage_truncated(&mut tx, services).await?;
    lap.mark("truncated");
    let mut back = WriteBack::new(rules, cutover);
    back.write_tables(endpoints, &mut tx).await?;
    lap.mark("upserts");
    // Its statistics: the deletes and verify join it to the legacy tables by their keys.
    sqlx::raw_sql("ANALYZE fetched").execute(&mut *tx).await?;
    back.delete_gone_parents(&mut tx).await?;
    back.settle_orphans(&mut tx).await?;
    lap.mark("parents");
    back.collect_conflicts(&mut tx).await?;
    lap.mark("conflicts");
    let verified = back.verify(&mut tx, services, &census).await?;
    lap.mark("verify");
    back.record(&mut tx, verified).await?;
    tx.commit().await?;
    lap.mark("commit");
    tracing::debug!(steps = %lap.0.join(", "), "write-back");
    steps.push(("write back, verify, thaw".into(), t.elapsed().as_secs_f64()));
    Ok(())
}

/// Stages the changed keys from the way back into temporary tables of `tx` (a killed rollback
/// reads the way back again), counts each table on both sides meanwhile, then thaws legacy
/// inside `tx` and brings admin's schema there up to date. Returns the counts.
async fn read_changes(
    endpoints: &Endpoints,
    tx: &mut PgConnection,
    services: &mut Services,
) -> Result<Vec<(i64, i64)>> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "{};
         CREATE TEMP TABLE fetched (table_name TEXT, key TEXT, digest TEXT) ON COMMIT DROP;",
        back::STAGED_SQL
    )))
    .execute(&mut *tx)
    .await?;
    // Each table's rows on both sides, counted on connections of their own while the way back
    // is read: both sides are frozen, and this transaction has not locked a table yet.
    let (census, ()) = tokio::try_join!(
        census(endpoints),
        read_way_back(endpoints, &mut *tx, services)
    )?;
    // Thawed inside this transaction: its locks keep every other session out until it commits,
    // and a write-back that fails leaves the legacy database frozen.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '30s'; {}",
        freeze::thaw_sql()
    )))
    .execute(&mut *tx)
    .await?;
    // Admin's schema in legacy up to date before any delete: its trigger records the audit
    // references legacy's SET NULL clears, which its chain's verification then reads.
    schema::migrator(Service::Admin)
        .run(&mut *tx)
        .await
        .map_err(|source| MigrateError::Migrations {
            target: "admin's schema on legacy".into(),
            source,
        })?;
    Ok(census)
}

/// A truncated table (staged as the key `*`): every key on either side, staged instead.
async fn stage_truncated(tx: &mut PgConnection, services: &mut Services) -> Result<()> {
    for table in TABLES {
        let whole: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM staged WHERE table_name = $1 AND key = '*')",
        )
        .bind(table.name)
        .fetch_one(&mut *tx)
        .await?;
        if !whole {
            continue;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO staged (table_name, key) SELECT $1, {k} FROM public.{t}",
            k = ident(table.key),
            t = ident(table.name)
        )))
        .bind(table.name)
        .execute(&mut *tx)
        .await?;
        let mut after = String::new();
        loop {
            let keys: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT {k} FROM public.{t} WHERE {k} > $1 ORDER BY {k} LIMIT $2",
                k = ident(table.key),
                t = ident(table.name)
            )))
            .bind(&after)
            .bind(CHUNK as i64 * 5)
            .fetch_all(service_conn(services, table.service))
            .await?;
            let Some(last) = keys.last() else { break };
            after = last.clone();
            sqlx::query(
                "INSERT INTO staged (table_name, key) SELECT $1, k FROM unnest($2::text[]) AS k",
            )
            .bind(table.name)
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM staged WHERE table_name = $1 AND key = '*'")
            .bind(table.name)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// What the write-back did so far, table by table.
struct WriteBack {
    rules: Rules,
    cutover: String,
    /// Per table, in [`TABLES`] order.
    written: Vec<WrittenBack>,
    /// Rows legacy's rules deleted or cleared.
    acted: Vec<Acted>,
    /// Rows refused so far.
    pending: Vec<Refused>,
    conflicts: Vec<Conflict>,
    changed_rows: u64,
}

fn at(name: &str) -> usize {
    TABLES.iter().position(|t| t.name == name).expect("a table")
}

impl WriteBack {
    fn new(rules: Rules, cutover: String) -> Self {
        Self {
            rules,
            cutover,
            written: TABLES
                .iter()
                .map(|t| WrittenBack {
                    table: t.name.to_string(),
                    ..Default::default()
                })
                .collect(),
            acted: Vec::new(),
            pending: Vec::new(),
            conflicts: Vec::new(),
            changed_rows: 0,
        }
    }

    /// Counts what legacy's rules did to the rows `acted`, and keeps them.
    fn acted(&mut self, acted: Vec<Acted>) {
        for a in &acted {
            let w = &mut self.written[at(a.table)];
            if a.cascade {
                w.cascaded += 1;
            } else {
                w.cleared += 1;
            }
        }
        self.acted.extend(acted);
    }

    /// Parents first. Each changed row is read once from its service database (the next chunk
    /// while this one is written): present, it is written and its digest kept for verify;
    /// absent, it is recorded for the deletes. A table's rows nothing points to are deleted once
    /// the table is through (a unique value they free can then be taken by the rows held back
    /// till then).
    async fn write_tables(&mut self, endpoints: &Endpoints, tx: &mut PgConnection) -> Result<()> {
        for table in TABLES {
            let held = self.write_changed(endpoints, tx, table).await?;
            if !is_parent(table) {
                self.written[at(table.name)].deleted += delete_absent(tx, table).await?;
            }
            let mut refused_here = Vec::new();
            for chunk in held.chunks(CHUNK) {
                let (i, u, refused) = upsert(tx, table, chunk.to_vec()).await?;
                self.written[at(table.name)].inserted += i;
                self.written[at(table.name)].updated += u;
                refused_here.extend(refused);
            }
            let still = retry(tx, refused_here, &mut self.written, &at).await?;
            self.pending.extend(still);
        }
        Ok(())
    }

    /// Writes `table`'s changed rows chunk by chunk; returns the rows held back for after the
    /// table's deletes.
    async fn write_changed(
        &mut self,
        endpoints: &Endpoints,
        tx: &mut PgConnection,
        table: &'static Table,
    ) -> Result<Vec<Vec<Option<String>>>> {
        let mut held = Vec::new();
        let mut fetcher = Fetcher::start(endpoints, table).await?;
        let mut asked = std::collections::VecDeque::new();
        let mut after = Some(String::new());
        loop {
            // Keys asked for ahead: the service rows of the next chunks are read while this
            // one is written.
            while let Some(from) = after.take_if(|_| asked.len() < AHEAD) {
                let keys = changed_keys(tx, table, &from).await?;
                let Some((last, _)) = keys.last() else { break };
                after = Some(last.clone());
                fetcher
                    .ask(keys.iter().map(|(k, _)| k.clone()).collect())
                    .await?;
                asked.push_back(keys);
            }
            let Some(keys) = asked.pop_front() else {
                return Ok(held);
            };
            let rows = fetcher.next().await?;
            self.changed_rows += keys.len() as u64;
            let chunk = write_chunk(tx, table, &keys, rows).await?;
            self.written[at(table.name)].inserted += chunk.inserted;
            self.written[at(table.name)].updated += chunk.updated;
            held.extend(chunk.held);
        }
    }

    /// Parents gone from their service database, once no refusing child points to them
    /// (legacy's CASCADE and SET NULL act); and again the rows refused, until a round changes
    /// nothing.
    async fn delete_gone_parents(&mut self, tx: &mut PgConnection) -> Result<()> {
        loop {
            let mut progress = 0u64;
            for table in TABLES.iter().rev().filter(|t| is_parent(t)) {
                let (deleted, by_rules) =
                    rules::delete_parents(tx, table, &self.rules, &self.cutover).await?;
                self.written[at(table.name)].deleted += deleted;
                self.acted(by_rules);
                progress += deleted;
            }
            let before = self.pending.len();
            let pending = std::mem::take(&mut self.pending);
            self.pending = retry(tx, pending, &mut self.written, &at).await?;
            progress += (before - self.pending.len()) as u64;
            if progress == 0 {
                return Ok(());
            }
        }
    }

    /// Rows refused for a parent legacy does not have: as legacy would hold them had the
    /// parent been deleted there.
    async fn settle_orphans(&mut self, tx: &mut PgConnection) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let (again, still, by_rules) =
            rules::refused_orphans(tx, pending, &self.rules, &self.cutover).await?;
        self.acted(by_rules);
        self.pending = still;
        let written = retry(tx, again, &mut self.written, &at).await?;
        self.pending.extend(written);
        Ok(())
    }

    /// What is left: conflicts, recorded beside the legacy data for the operator.
    async fn collect_conflicts(&mut self, tx: &mut PgConnection) -> Result<()> {
        for table in TABLES.iter().filter(|t| is_parent(t)) {
            let kept: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT a.key FROM fetched a JOIN public.{t} t ON t.{k} = a.key \
                 WHERE a.table_name = $1 AND a.digest IS NULL ORDER BY a.key",
                t = ident(table.name),
                k = ident(table.key)
            )))
            .bind(table.name)
            .fetch_all(&mut *tx)
            .await?;
            self.kept(tx, table, &kept).await?;
        }
        for refused in &self.pending {
            self.conflicts.push(Conflict {
                table: refused.table.name.into(),
                key: key_of(refused.table, &refused.row),
                outcome: "not written".into(),
                reason: refused.reason.clone(),
            });
        }
        record_conflicts(tx, &self.cutover, &self.conflicts, &self.pending).await
    }

    /// The rows of `table` whose delete legacy refused: conflicts, each with its reason (a kept
    /// user's password locked).
    async fn kept(&mut self, tx: &mut PgConnection, table: &Table, kept: &[String]) -> Result<()> {
        let locked = if table.name == "users" {
            rules::lock_kept_users(tx, kept).await?
        } else {
            0
        };
        for chunk in kept.chunks(CHUNK) {
            let mut reasons = why_kept(tx, table, chunk, &self.rules).await?;
            if locked > 0 {
                for reason in reasons.values_mut() {
                    reason.push_str("; its password is locked: the account cannot log in");
                }
            }
            for key in chunk {
                self.conflicts.push(Conflict {
                    table: table.name.into(),
                    key: key.clone(),
                    outcome: "kept".into(),
                    reason: reasons
                        .get(key)
                        .cloned()
                        .unwrap_or_else(|| "rows written back reference it".to_string()),
                });
            }
        }
        Ok(())
    }

    /// Verify: every changed row that is not a conflict, and that legacy's own rules did not
    /// change, is equal on both sides; each table's count differs by exactly its conflicts and
    /// the rows legacy's CASCADE deleted that its service database still holds. A difference
    /// fails the write-back (its transaction, dropped, rolls back: legacy stays frozen and
    /// unchanged). Returns the rows verified.
    async fn verify(
        &self,
        tx: &mut PgConnection,
        services: &mut Services,
        census: &[(i64, i64)],
    ) -> Result<u64> {
        let mut verified = 0u64;
        let mut differing = 0u64;
        let mut differences = Vec::new();
        for table in TABLES {
            let service = service_conn(services, table.service);
            let check = self.check_table(tx, service, table, census).await?;
            verified += check.rows;
            differing += check.differing;
            differences.extend(check.differences);
        }
        if differing > 0 {
            differences.truncate(10);
            return Err(MigrateError::StepFailed {
                phase: "rollback",
                step: "verify".into(),
                cause: Box::new(MigrateError::Diverged(format!(
                    "{differing} differences between the legacy and the service databases after \
                     the write-back (first: {})",
                    differences.join(", ")
                ))),
                aftermath: "nothing was written back".into(),
            });
        }
        Ok(verified)
    }

    /// [`Self::verify`] of one table.
    async fn check_table(
        &self,
        tx: &mut PgConnection,
        service: &mut PgConnection,
        table: &'static Table,
        census: &[(i64, i64)],
    ) -> Result<TableCheck> {
        let acted_here = || self.acted.iter().filter(|a| a.table == table.name);
        let cascaded_keys: Vec<String> = acted_here()
            .filter(|a| a.cascade)
            .map(|a| a.key.clone())
            .collect();
        let cascaded_in_service: i64 = if cascaded_keys.is_empty() {
            0
        } else {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM public.{t} WHERE {key} = ANY($1)",
                t = ident(table.name),
                key = ident(table.key)
            )))
            .bind(&cascaded_keys)
            .fetch_one(service)
            .await?
        };
        let conflicts_here = || self.conflicts.iter().filter(|c| c.table == table.name);
        let skip: Vec<&str> = conflicts_here()
            .map(|c| c.key.as_str())
            .chain(acted_here().map(|a| a.key.as_str()))
            .collect();
        let kept = conflicts_here().filter(|c| c.outcome == "kept").count() as i64;
        // Rows not written that legacy did not have: legacy has that many fewer.
        let refused_keys: Vec<&str> = conflicts_here()
            .filter(|c| c.outcome != "kept")
            .map(|c| c.key.as_str())
            .collect();
        let refused: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM unnest($1::text[]) AS k \
             WHERE NOT EXISTS (SELECT 1 FROM public.{t} WHERE {key} = k)",
            t = ident(table.name),
            key = ident(table.key)
        )))
        .bind(&refused_keys)
        .fetch_one(&mut *tx)
        .await?;
        let compared = compare_fetched(tx, table, &skip).await?;
        // Legacy's rows now: those before, with what the write-back inserted and deleted, and
        // what legacy's CASCADE deleted (recorded before each parent's delete).
        let (before, s) = census[at(table.name)];
        let w = &self.written[at(table.name)];
        let cascaded_here = acted_here().filter(|a| a.cascade && a.in_legacy).count() as i64;
        let l = before + w.inserted as i64 - w.deleted as i64 - cascaded_here;
        let mut check = TableCheck {
            rows: compared.rows,
            differing: compared.differing,
            differences: Vec::new(),
        };
        if l - s != kept - refused - cascaded_in_service {
            check.differences.push(format!(
                "{}: {l} rows in legacy, {s} in the {} database ({kept} kept, {refused} not \
                 written, {cascaded_in_service} deleted by legacy's cascade)",
                table.name,
                table.service.name()
            ));
            check.differing += 1;
        }
        let listed = compared.first.iter().map(|k| format!("{} {k}", table.name));
        check.differences.extend(listed);
        Ok(check)
    }

    /// The outcome, in the transaction that commits it: the rollback is `applied`.
    async fn record(self, tx: &mut PgConnection, verified_rows: u64) -> Result<()> {
        let report = RollbackReport {
            freeze_seconds: super::record::frozen_seconds(tx).await?,
            changed_rows: self.changed_rows,
            tables: self.written,
            conflicts: self.conflicts,
            verified_rows,
            ..Default::default()
        };
        super::record::applied(tx, &report).await
    }
}

/// What the verify found in one table.
struct TableCheck {
    rows: u64,
    differing: u64,
    differences: Vec<String>,
}
