//! Telling a database that cannot be used right now (retry later, not the message's fault) from an
//! error the message causes (count it towards dead-lettering). Getting this wrong either burns a good
//! event's retries during a short outage, or requeues a poison message forever.

/// Whether `error` is a database outage or a transient conflict rather than a fault of the data.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of outages and conflicts that a later attempt can get past: connection exceptions
/// (08), insufficient resources (53), operator intervention such as a shutdown (57P), serialization
/// failures and deadlocks (40001, 40P01), and a read-only database (25006): a migration's freeze,
/// which ends when the service is moved to the database that takes its writes, or a standby not
/// promoted yet.
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01"
        || code == "25006"
}

/// A handler's way to say "not now": the event goes back to the queue (after a pause) instead of
/// using up its retries towards the dead-letter queue, for a condition an operator must fix
/// rather than a bad event.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryLater(pub String);

/// [`is_transient`] for a handler's boxed error, which may wrap a database error, or a
/// [`RetryLater`].
/// The whole chain of causes is looked at: a handler may wrap the database's error in its own.
pub fn is_transient_boxed(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<RetryLater>() || e.downcast_ref::<sqlx::Error>().is_some_and(is_transient) {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_conflicts_are_transient_data_errors_are_not() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "40001", "40P01", "25006",
        ] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["22021", "23505", "23503", "42P01", "22P02"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(sqlx::Error::PoolClosed);
        assert!(is_transient_boxed(boxed.as_ref()));
        let boxed: Box<dyn std::error::Error + Send + Sync> = "bad payload".into();
        assert!(!is_transient_boxed(boxed.as_ref()));
        #[derive(Debug, thiserror::Error)]
        #[error("the handler's own error")]
        struct Wrapped(#[source] sqlx::Error);
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Wrapped(sqlx::Error::PoolTimedOut));
        assert!(is_transient_boxed(boxed.as_ref()));
    }
}
