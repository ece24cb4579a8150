//! The services' pool (`platform::db::connect`) against the real server: a transaction whose
//! future is dropped at any point (a client hanging up, a timeout), the BEGIN's round trip
//! among them, leaves nothing open on the connection the pool hands out next. (sqlx 0.9.0 left
//! a BEGIN cancelled in flight open, and the next borrower's statements ran inside it, holding
//! their locks for good: the pool's single connection here makes that borrower this test.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `fut`, given up (dropped) once it has been pending `limit` times.
struct DropAfter<F> {
    fut: Pin<Box<F>>,
    pending: usize,
    limit: usize,
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                self.pending += 1;
                if self.pending >= self.limit {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

fn server() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether the connection the pool hands out runs its statements inside a transaction someone
/// else left open (two statements then see one transaction id).
async fn next_borrower_in_a_transaction(pool: &sqlx::PgPool) -> bool {
    let mut conn = pool.acquire().await.unwrap();
    let first: i64 = sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let second: i64 = sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    first == second
}

#[tokio::test]
async fn a_transaction_dropped_at_any_point_leaves_the_next_borrower_outside_it() {
    let pool = platform::db::connect(&server(), 1).await.unwrap();
    let mut points = 0;
    for limit in 1.. {
        let work = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_sleep(0.05)")
                .execute(&mut *tx)
                .await?;
            Ok::<_, sqlx::Error>(tx)
        };
        let outcome = DropAfter {
            fut: Box::pin(work),
            pending: 0,
            limit,
        }
        .await;
        let finished = outcome.is_some();
        drop(outcome);
        assert!(
            !next_borrower_in_a_transaction(&pool).await,
            "dropped after {limit} waits: the next borrower ran inside the dropped transaction"
        );
        points += 1;
        if finished {
            break;
        }
    }
    assert!(
        points >= 3,
        "the transaction waits at several points: {points}"
    );
}
