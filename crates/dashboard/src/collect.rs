//! What the journal and the databases say, read every second: each table's chunks, rows and size
//! in its service database, the latest run of each phase (with verify's report), the capture
//! slot and sync positions, the freeze, the rollback's state, and the event hub's queues.
//! Read-only: the dashboard never writes to any database (it does not even create the journal).

use std::time::Duration;

use platform::Service;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use migrator::Endpoints;
use migrator::contract::tables_of;

/// One read of everything the journal and the databases know.
#[derive(Debug, Clone, Default)]
pub struct JournalView {
    pub tables: Vec<JournalTable>,
    /// The latest run of each phase in each service database.
    pub runs: Vec<Run>,
    pub capture: Option<migrator::cdc::slot::CaptureState>,
    pub positions: Vec<crate::snapshot::SyncPosition>,
    pub frozen_at: Option<String>,
    pub rollback: Option<crate::snapshot::RollbackView>,
    /// Databases that could not be read, and why.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct JournalTable {
    pub table: &'static str,
    pub service: &'static str,
    pub state: String,
    pub estimated_rows: u64,
    pub rows: u64,
    pub chunks_done: u64,
    pub chunks: u64,
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Run {
    pub service: &'static str,
    pub phase: String,
    pub outcome: String,
    pub at: String,
    pub detail: serde_json::Value,
}

/// A connection per database, kept between reads.
pub struct Collector {
    legacy: PgPool,
    targets: Vec<(Service, PgPool)>,
    amqp_url: Option<String>,
    queues: Vec<String>,
}

/// How long one database may take to answer a read before it is reported unreachable.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

fn pool(url: &str) -> Result<PgPool, sqlx::Error> {
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(READ_TIMEOUT)
        .connect_lazy_with(
            platform::db::parse_url(url)
                .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?
                .application_name("mfe migrate dashboard"),
        ))
}

const ISO: &str = "YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"";

impl Collector {
    /// `amqp_url`: the broker whose service queues (`<service>.events`, with `prefix.` before
    /// when given) are shown; `None` shows none.
    pub fn new(
        endpoints: &Endpoints,
        amqp_url: Option<String>,
        queue_prefix: Option<&str>,
    ) -> Result<Self, sqlx::Error> {
        let targets = Service::ALL
            .into_iter()
            .map(|s| Ok((s, pool(endpoints.target(s))?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let queues = contracts::events::subscriptions::ALL
            .iter()
            .map(|(service, _)| match queue_prefix {
                Some(prefix) => format!("{prefix}.{service}.events"),
                None => format!("{service}.events"),
            })
            .collect();
        Ok(Self {
            legacy: pool(endpoints.legacy())?,
            targets,
            amqp_url,
            queues,
        })
    }

    /// Every database is read at once: one that does not answer holds the view back by
    /// [`READ_TIMEOUT`] at most, not by that much per database.
    pub async fn journal(&self) -> JournalView {
        let targets = self.targets.iter().map(|(service, pool)| async move {
            let mut part = JournalView::default();
            let outcome =
                tokio::time::timeout(READ_TIMEOUT, read_target(*service, pool, &mut part)).await;
            (*service, part, outcome)
        });
        let legacy = async {
            let mut part = JournalView::default();
            let outcome =
                tokio::time::timeout(READ_TIMEOUT, read_legacy(&self.legacy, &mut part)).await;
            (part, outcome)
        };
        let (targets, (legacy, legacy_outcome)) =
            tokio::join!(futures_util::future::join_all(targets), legacy);
        let mut view = JournalView::default();
        for (service, part, outcome) in targets {
            match outcome {
                Ok(Ok(())) => {
                    view.tables.extend(part.tables);
                    view.runs.extend(part.runs);
                    view.positions.extend(part.positions);
                }
                Ok(Err(e)) => unreachable(service, &mut view, e.to_string()),
                Err(_) => unreachable(service, &mut view, "no answer within 3 s".into()),
            }
        }
        match legacy_outcome {
            Ok(Ok(())) => {
                view.capture = legacy.capture;
                view.frozen_at = legacy.frozen_at;
                view.rollback = legacy.rollback;
            }
            Ok(Err(e)) => view.problems.push(format!("legacy database: {e}")),
            Err(_) => view
                .problems
                .push("legacy database: no answer within 3 s".into()),
        }
        view
    }

    /// The event hub's queues; `Err` says why they cannot be read.
    pub async fn hub(&self) -> Option<Result<Vec<events::dlq::QueueDepth>, String>> {
        let url = self.amqp_url.as_deref()?;
        Some(
            match tokio::time::timeout(
                Duration::from_secs(5),
                events::dlq::depths(url, &self.queues),
            )
            .await
            {
                Ok(Ok(depths)) => Ok(depths),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the broker did not answer within 5 s".into()),
            },
        )
    }
}

fn unreachable(service: Service, view: &mut JournalView, why: String) {
    view.problems
        .push(format!("{} database: {why}", service.name()));
    view.tables.retain(|t| t.service != service.name());
    for table in tables_of(service) {
        view.tables.push(JournalTable {
            table: table.name,
            service: service.name(),
            state: "unreachable".into(),
            estimated_rows: 0,
            rows: 0,
            chunks_done: 0,
            chunks: 0,
            bytes: None,
        });
    }
}

#[derive(sqlx::FromRow)]
struct TableRow {
    name: String,
    state: Option<String>,
    estimated_rows: i64,
    chunks: i64,
    chunks_done: i64,
    rows: i64,
    bytes: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RollbackRow {
    step: String,
    frozen_at: Option<String>,
    applied_at: Option<String>,
    done_at: Option<String>,
}

async fn read_target(
    service: Service,
    pool: &PgPool,
    view: &mut JournalView,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let names: Vec<String> = tables_of(service).map(|t| t.name.to_string()).collect();
    let has_journal: bool =
        sqlx::query_scalar("SELECT to_regclass('mfe_migration.chunks') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    // One statement for every table of the service: its size, and its journal when there is one.
    let rows: Vec<TableRow> = if has_journal {
        sqlx::query_as(
            "SELECT n AS name, t.state, coalesce(t.estimated_rows, 0) AS estimated_rows,
                    (SELECT count(*) FROM mfe_migration.chunks c WHERE c.table_name = n) AS chunks,
                    (SELECT count(*) FROM mfe_migration.chunks c
                     WHERE c.table_name = n AND c.done_at IS NOT NULL) AS chunks_done,
                    (SELECT coalesce(sum(c.rows), 0)::bigint FROM mfe_migration.chunks c
                     WHERE c.table_name = n) AS rows,
                    pg_table_size(to_regclass(format('public.%I', n))) AS bytes
             FROM unnest($1::text[]) n LEFT JOIN mfe_migration.tables t ON t.table_name = n",
        )
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?
    } else {
        sqlx::query_as(
            "SELECT n AS name, NULL::text AS state, 0::bigint AS estimated_rows,
                    0::bigint AS chunks, 0::bigint AS chunks_done, 0::bigint AS rows,
                    pg_table_size(to_regclass(format('public.%I', n))) AS bytes
             FROM unnest($1::text[]) n",
        )
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?
    };
    for table in tables_of(service) {
        let Some(row) = rows.iter().find(|r| r.name == table.name) else {
            continue;
        };
        view.tables.push(JournalTable {
            table: table.name,
            service: service.name(),
            state: row.state.clone().unwrap_or_else(|| "not started".into()),
            estimated_rows: row.estimated_rows.max(0) as u64,
            chunks: row.chunks.max(0) as u64,
            chunks_done: row.chunks_done.max(0) as u64,
            rows: row.rows.max(0) as u64,
            bytes: row.bytes.map(|b| b.max(0) as u64),
        });
    }
    if !has_journal {
        return Ok(());
    }
    let runs: Vec<(String, String, String, serde_json::Value)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT ON (phase) phase, outcome, to_char(at AT TIME ZONE 'UTC', '{ISO}'), detail
         FROM mfe_migration.runs ORDER BY phase, at DESC, id DESC"
    )))
        .fetch_all(&mut *conn)
        .await?;
    view.runs
        .extend(runs.into_iter().map(|(phase, outcome, at, detail)| Run {
            service: service.name(),
            phase,
            outcome,
            at,
            detail,
        }));
    let positions: Vec<(String, i64, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT commit_lsn::text, transactions, to_char(commit_time AT TIME ZONE 'UTC', '{ISO}')
         FROM mfe_migration.sync_position"
    )))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default(); // no sync yet: no table
    view.positions.extend(
        positions
            .into_iter()
            .map(
                |(position, transactions, commit_time)| crate::snapshot::SyncPosition {
                    service: service.name().to_string(),
                    position,
                    transactions,
                    commit_time,
                },
            ),
    );
    Ok(())
}

async fn read_legacy(pool: &PgPool, view: &mut JournalView) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    view.capture = Some(migrator::cdc::slot::state(&mut conn).await?);
    view.frozen_at = migrator::cdc::freeze::frozen_since(&mut conn)
        .await?
        .map(|at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    let has_rollback: bool =
        sqlx::query_scalar("SELECT to_regclass('mfe_rollback.state') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if has_rollback {
        let state: Option<RollbackRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT step, to_char(frozen_at AT TIME ZONE 'UTC', '{ISO}') AS frozen_at,
                        to_char(applied_at AT TIME ZONE 'UTC', '{ISO}') AS applied_at,
                        to_char(done_at AT TIME ZONE 'UTC', '{ISO}') AS done_at
                 FROM mfe_rollback.state WHERE id = 1"
        )))
        .fetch_optional(&mut *conn)
        .await?;
        view.rollback = state.map(|r| crate::snapshot::RollbackView {
            state: r.step,
            step: None,
            frozen_at: r.frozen_at,
            applied_at: r.applied_at,
            done_at: r.done_at,
        });
    }
    Ok(())
}
