//! The live view of a migration: one page an operator watches from copy to cutover, the JSON
//! behind it, and the same figures as Prometheus gauges.
//!
//! `mfe migrate <phase> --ui ADDR` serves it from the process that runs the phase ([`live::Live`]
//! receives the phase's progress as it happens); `mfe migrate dashboard` serves it from the
//! journal alone, read-only, for a second operator. Both read the journal and the databases every
//! second ([`collect`]), so either shows what the other phases left there.
//!
//! It binds to localhost unless told otherwise, and then only with a token: the page shows table
//! names, row ids that differ and the platform's state, which is not for everyone on the network.

pub mod collect;
pub mod hosts;
pub mod live;
pub mod model;
pub mod prometheus;
pub mod server;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::collect::Collector;
use crate::live::Live;
use crate::model::{Inputs, Model};
use crate::server::Published;
use crate::snapshot::{HubView, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "the dashboard would listen on {0}, beyond this machine: give it a token (--ui-token or MFE_UI_TOKEN, at least 16 characters) or listen on 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    #[error("the dashboard's token must be at least 16 characters")]
    TokenTooShort,
    #[error("the dashboard cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the dashboard cannot use a database URL: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// The broker whose queues are shown; `None` shows none.
    pub amqp_url: Option<String>,
    /// Queue names are `<prefix>.<service>.events` (a platform sharing its broker).
    pub queue_prefix: Option<String>,
    /// How often the journal is read and a snapshot published.
    pub every: Duration,
    /// Names besides its address the view answers for (`Host`): a proxy's, a DNS name.
    pub hosts: Vec<String>,
}

impl Options {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            token: None,
            amqp_url: None,
            queue_prefix: None,
            every: Duration::from_secs(1),
            hosts: Vec::new(),
        }
    }
}

/// How often the broker is asked for its queues (each look is a connection).
const HUB_EVERY: Duration = Duration::from_secs(5);

/// A running dashboard; stops when dropped.
pub struct Dashboard {
    addr: SocketAddr,
    token: Option<String>,
    live: Option<Arc<Live>>,
    refresh: mpsc::Sender<oneshot::Sender<()>>,
    latest: watch::Receiver<Published>,
    server: tokio::task::JoinHandle<()>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Binds and starts serving. With `live`, the page follows the phase that reports to it.
    pub async fn start(
        endpoints: &migrator::Endpoints,
        options: Options,
        live: Option<Arc<Live>>,
    ) -> Result<Self, DashboardError> {
        match &options.token {
            None if !options.listen.ip().is_loopback() => {
                return Err(DashboardError::TokenRequired(options.listen));
            }
            Some(t) if t.chars().count() < 16 => return Err(DashboardError::TokenTooShort),
            _ => {}
        }
        let collector = Collector::new(
            endpoints,
            options.amqp_url.clone(),
            options.queue_prefix.as_deref(),
        )?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| DashboardError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind {
                addr: options.listen,
                source,
            })?;
        let mut model = Model::default();
        let first = publish(
            &mut model,
            live.as_deref(),
            &collector.journal().await,
            &HubView::default(),
        );
        let (tx, latest) = watch::channel(first);
        let (refresh, requests) = mpsc::channel(8);
        let refresher = tokio::spawn(refresh_loop(
            collector,
            model,
            live.clone(),
            tx,
            requests,
            options.every,
        ));
        let app = server::router(server::AppState {
            latest: latest.clone(),
            token: options.token.as_deref().map(Arc::from),
            hosts: Arc::new(hosts::AllowedHosts::new(addr, &options.hosts)),
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the dashboard stopped serving");
            }
        });
        Ok(Self {
            addr,
            token: options.token,
            live,
            refresh,
            latest,
            server,
            refresher,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address for logs: never the token.
    pub fn display_url(&self) -> String {
        match &self.token {
            Some(_) => format!("http://{}/?token=…", self.addr),
            None => format!("http://{}/", self.addr),
        }
    }

    pub fn live(&self) -> Option<&Arc<Live>> {
        self.live.as_ref()
    }

    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.borrow().snapshot.clone()
    }

    /// Reads everything again now and publishes it; returns once it is published.
    pub async fn refresh(&self) {
        let (done, published) = oneshot::channel();
        if self.refresh.send(done).await.is_ok() {
            let _ = published.await;
        }
    }

    /// The phase ended: publishes its outcome and gives the pages a moment to receive it.
    pub async fn finish(&self, error: Option<String>) {
        if let Some(live) = &self.live {
            live.finish(error);
        }
        self.refresh().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.server.abort();
        self.refresher.abort();
    }
}

fn publish(
    model: &mut Model,
    live: Option<&Live>,
    journal: &collect::JournalView,
    hub: &HubView,
) -> Published {
    let state = live.map(Live::state);
    let snapshot = model.snapshot(Inputs {
        live: state.as_ref(),
        journal,
        hub,
        now: Instant::now(),
        wall: chrono::Utc::now(),
    });
    let json = serde_json::to_string(&snapshot).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("the snapshot could not be written: {e}")}).to_string()
    });
    Published {
        snapshot: Arc::new(snapshot),
        json: Arc::from(json),
    }
}

async fn refresh_loop(
    collector: Collector,
    mut model: Model,
    live: Option<Arc<Live>>,
    tx: watch::Sender<Published>,
    mut requests: mpsc::Receiver<oneshot::Sender<()>>,
    every: Duration,
) {
    let mut hub = HubView::default();
    let mut hub_read: Option<Instant> = None;
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        if hub_read.is_none_or(|t| t.elapsed() >= HUB_EVERY) {
            hub_read = Some(Instant::now());
            hub = match collector.hub().await {
                None => HubView::default(),
                Some(Ok(queues)) => HubView {
                    available: true,
                    error: None,
                    queues,
                },
                Some(Err(e)) => HubView {
                    available: false,
                    error: Some(e),
                    queues: Vec::new(),
                },
            };
        }
        let journal = collector.journal().await;
        tx.send_replace(publish(&mut model, live.as_deref(), &journal, &hub));
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            request = requests.recv() => match request {
                Some(done) => waiting.push(done),
                None => return,
            },
        }
    }
}
