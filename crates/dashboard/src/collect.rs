//! What the journal and the databases say, read every second: each table's chunks, rows and size
//! in its service database, the latest run of each phase (with verify's report), the capture
//! slot and sync positions, the freeze, the rollback's state, and the event hub's queues.
//! Read-only: the dashboard never writes to any database (it does not even create the journal).

use std::time::Duration;

use platform::Service;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use migrator::Endpoints;
use migrator::status::{Run, SyncPosition, TableJournal};
use schema::contract::tables_of;

use crate::model::iso;

/// One read of everything the journal and the databases know.
#[derive(Debug, Clone, Default)]
pub struct JournalView {
    pub tables: Vec<TableJournal>,
    /// The latest run of each phase in each service database.
    pub runs: Vec<Run>,
    pub capture: Option<migrator::cdc::slot::CaptureState>,
    pub positions: Vec<SyncPosition>,
    pub frozen_at: Option<String>,
    pub rollback: Option<crate::snapshot::RollbackView>,
    /// The migration's state: the furthest any service database records.
    pub state: Option<migrator::engine::journal::state::State>,
    /// The way-back slot of each service database that has one.
    pub way_back: Vec<(Service, migrator::rollback::way_back::WayBack)>,
    /// Databases that could not be read, and why.
    pub problems: Vec<String>,
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
            let read = tokio::time::timeout(READ_TIMEOUT, async {
                let mut conn = pool.acquire().await?;
                migrator::status::read_service(&mut conn, *service).await
            })
            .await;
            (*service, read)
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
        for (service, read) in targets {
            match read {
                Ok(Ok(read)) => {
                    view.state = view.state.max(read.state);
                    view.way_back.extend(read.way_back.map(|w| (service, w)));
                    view.tables.extend(read.tables);
                    view.runs.extend(read.runs);
                    view.positions.extend(read.positions);
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
    for table in tables_of(service) {
        view.tables.push(TableJournal {
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

async fn read_legacy(pool: &PgPool, view: &mut JournalView) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    view.capture = Some(migrator::cdc::slot::state(&mut conn).await?);
    view.frozen_at = migrator::engine::freeze::frozen_since(&mut conn)
        .await?
        .map(iso);
    let record = migrator::rollback::record::read(&mut conn).await?;
    view.rollback = record.map(|r| crate::snapshot::RollbackView {
        state: r.step,
        step: None,
        frozen_at: r.frozen_at.map(iso),
        applied_at: r.applied_at.map(iso),
        done_at: r.done_at.map(iso),
    });
    Ok(())
}
