//! Connections for the hot one-statement reads (`GET /users/{id}`, `GET /profile/me`, ...),
//! without a round trip to the server each time one is given back.
//!
//! sqlx's pool pings every connection that comes back to it (a Sync and its ReadyForQuery),
//! because a future dropped in the middle of a query can leave a connection unusable. For a
//! request that runs a single query, that is a second round trip to PostgreSQL, and on a small
//! machine the database's and the service's share of the CPU per request with it (profiled in
//! docs/BENCHMARKS.md). Here the caller says when it is done with a connection whose statement
//! completed ([`ReadConn::release`]); any other end (an error, a request cancelled mid-query) closes
//! the connection instead of testing it, so a connection in an unknown state is never reused.
//! A connection idle for more than a second is pinged before it is handed out again (the server
//! may have restarted meanwhile).
//!
//! It sits beside the service's [`PgPool`] with the same connect options and the same limit; it is
//! for single statements outside transactions only (a connection goes back as it is).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::TRUST_RECENTLY_RELEASED;

/// Connections for one-statement reads; cheap to clone.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    options: PgConnectOptions,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

/// A connection of a [`ReadPool`]; call [`ReadConn::release`] once its statement has completed.
pub struct ReadConn {
    conn: Option<PgConnection>,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl ReadPool {
    /// A read pool on the database of `pool`, with its connect options, connection limit and
    /// acquire timeout. Connects lazily.
    pub fn beside(pool: &PgPool) -> Self {
        let options = pool.options();
        Self::new(
            (*pool.connect_options()).clone(),
            options.get_max_connections(),
            options.get_acquire_timeout(),
        )
    }

    pub fn new(options: PgConnectOptions, max_connections: u32, acquire_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
                acquire_timeout,
            }),
        }
    }

    /// A connection: an idle one (tested first when it has been idle a while) or a new one.
    /// Waits at most the acquire timeout for a free slot or a new connection
    /// (`sqlx::Error::PoolTimedOut`, which the services answer with 503, as for their pools).
    pub async fn acquire(&self) -> sqlx::Result<ReadConn> {
        let deadline = tokio::time::Instant::now() + self.inner.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        while let Some((mut conn, since)) = self.pop_idle() {
            if since.elapsed() <= TRUST_RECENTLY_RELEASED {
                return Ok(self.wrap(conn, permit));
            }
            match tokio::time::timeout_at(deadline, conn.ping()).await {
                Ok(Ok(())) => return Ok(self.wrap(conn, permit)),
                // Broken (or too slow to answer): dropped, which closes its socket.
                Ok(Err(_)) | Err(_) => continue,
            }
        }
        let conn = tokio::time::timeout_at(deadline, self.inner.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(self.wrap(conn, permit))
    }

    /// Connections open and idle now.
    pub fn num_idle(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn pop_idle(&self) -> Option<(PgConnection, Instant)> {
        // Last in, first out: the most recently used connection is the likeliest to be warm.
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
    }

    fn wrap(&self, conn: PgConnection, permit: OwnedSemaphorePermit) -> ReadConn {
        ReadConn {
            conn: Some(conn),
            pool: self.inner.clone(),
            _permit: permit,
        }
    }
}

impl ReadConn {
    /// Gives the connection back for reuse: its last statement completed, so it is idle at the
    /// protocol level. Dropping a `ReadConn` without this closes the connection.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((conn, Instant::now()));
        }
    }
}

impl Deref for ReadConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_ref()
            .expect("a ReadConn holds its connection until released")
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("a ReadConn holds its connection until released")
    }
}
