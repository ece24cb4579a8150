//! The relay and the consumer against real PostgreSQL and RabbitMQ, each test on its own database
//! and its own exchange and queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use events::{
    BrokerHealth, Consumer, Envelope, EventsSettings, Handler, HandlerFuture, Outbox, Relay,
};
use schema::HubTable;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use test_support::{TestBroker, TestDb, eventually};

/// How long anything the hub does in the background may take in these tests.
const WAIT: Duration = Duration::from_secs(5);

/// The hub's own tables, as a service gets them, and one table the test handler writes.
fn schema_sql() -> String {
    format!(
        "CREATE SCHEMA svc; {} {} {} CREATE TABLE svc.applied (event_id UUID NOT NULL, n INT NOT NULL);",
        HubTable::Outbox.ddl("svc"),
        schema::hub::outbox_trace_context("svc"),
        HubTable::Inbox.ddl("svc")
    )
}

struct Hub {
    pool: PgPool,
    broker: TestBroker,
    settings: Arc<EventsSettings>,
    _db: TestDb,
}

async fn hub() -> Hub {
    hub_with(|_| {}).await
}

async fn hub_with(customise: impl FnOnce(&mut EventsSettings)) -> Hub {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema_sql()))
        .execute(&pool)
        .await
        .unwrap();
    let broker = TestBroker::new();
    let config = test_support::spawn::config(platform::Service::Profile, &db.url);
    let mut settings = broker.settings(&config);
    customise(&mut settings);
    Hub {
        pool,
        broker,
        settings: Arc::new(settings),
        _db: db,
    }
}

impl Hub {
    fn outbox(&self) -> Outbox {
        Outbox::new("svc")
    }

    fn relay(&self, health: &BrokerHealth) -> tokio::task::JoinHandle<()> {
        Relay::new(
            self.pool.clone(),
            self.outbox(),
            self.settings.clone(),
            health.link("relay"),
        )
        .spawn()
    }

    fn consumer(
        &self,
        handler: Arc<dyn Handler>,
        health: &BrokerHealth,
    ) -> tokio::task::JoinHandle<()> {
        Consumer::new(
            self.pool.clone(),
            "svc",
            self.settings.clone(),
            &["thing.#"],
            handler,
            health.link("consumer"),
        )
        .spawn()
    }

    async fn record(&self, n: i32) -> uuid::Uuid {
        let mut tx = self.pool.begin().await.unwrap();
        let id = self
            .outbox()
            .record(&mut tx, "thing.happened", &json!({"n": n}))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        id
    }

    async fn applied(&self) -> Vec<i32> {
        sqlx::query_scalar("SELECT n FROM svc.applied ORDER BY n")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    async fn wait_applied(&self, count: usize) -> Vec<i32> {
        let enough = eventually(WAIT, || async {
            let applied = self.applied().await;
            (applied.len() >= count).then_some(applied)
        })
        .await;
        match enough {
            Some(applied) => applied,
            None => self.applied().await,
        }
    }
}

async fn wait_connected(health: &BrokerHealth) {
    let up = eventually(WAIT, || async { health.down().is_empty().then_some(()) }).await;
    assert!(up.is_some(), "still down: {:?}", health.down());
}

/// Records each event's `n` in `svc.applied`; fails while `failing` is set.
struct Recorder {
    failing: AtomicBool,
}

impl Handler for Recorder {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a Envelope) -> HandlerFuture<'a> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err("the handler is failing on purpose".into());
            }
            let n = event.data["n"].as_i64().ok_or("no n")? as i32;
            sqlx::query("INSERT INTO svc.applied (event_id, n) VALUES ($1, $2)")
                .bind(event.id)
                .bind(n)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn the_relay_publishes_in_creation_order_and_marks_rows_published() {
    let hub = hub().await;
    let mut watcher = hub.broker.watch(&["thing.#"]).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(hub.record(n).await);
    }
    let health = BrokerHealth::new();
    hub.relay(&health);
    let seen = watcher.drain(Duration::from_secs(2)).await;
    let seen_ids: Vec<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(seen_ids, ids, "every row once, in creation order");
    assert_eq!(seen[0].source, "profile-service");
    assert_eq!(seen[0].data, json!({"n": 0}));
    let drained = eventually(WAIT, || async {
        (hub.outbox().backlog(&hub.pool).await.unwrap() == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the outbox is drained");
}

#[tokio::test]
async fn a_commit_wakes_the_relay_without_waiting_for_its_poll() {
    // With an hour between polls, only the commit's notification can get the event out.
    let hub = hub_with(|s| s.relay_poll = Duration::from_secs(3600)).await;
    let health = BrokerHealth::new();
    hub.relay(&health);
    wait_connected(&health).await;
    let mut watcher = hub.broker.watch(&["thing.#"]).await;
    // Let the relay finish its first pass and go to sleep on LISTEN.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = hub.record(1).await;
    let event = watcher
        .next(Duration::from_secs(10))
        .await
        .expect("published after the commit");
    assert_eq!(event.id, id);
}

#[tokio::test]
async fn two_relays_on_one_outbox_never_publish_a_row_twice() {
    let hub = hub_with(|s| s.relay_poll = Duration::from_millis(20)).await;
    let mut watcher = hub.broker.watch(&["thing.#"]).await;
    let health = BrokerHealth::new();
    hub.relay(&health);
    hub.relay(&health);
    wait_connected(&health).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let pool = hub.pool.clone();
            tokio::spawn(async move {
                for i in 0..75 {
                    let mut tx = pool.begin().await.unwrap();
                    Outbox::new("svc")
                        .record(&mut tx, "thing.happened", &json!({"n": w * 1000 + i}))
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = watcher.drain(Duration::from_secs(2)).await;
    let mut ids: Vec<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 300);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "no row published twice");
}

#[tokio::test]
async fn a_failing_handler_is_retried_then_dead_lettered_and_replay_brings_it_back() {
    retried_dead_lettered_and_replayed(&hub().await).await;
}

/// The same on quorum queues (`EVENTS_QUEUE_TYPE=quorum`), here on the single local node: the
/// retry delay (per-message TTL), dead-lettering and replay all work, and the broker holds the
/// queues as quorum queues (redeclaring one as classic is refused).
#[tokio::test]
async fn on_quorum_queues_retries_dead_letters_and_replay_work_the_same() {
    let hub = hub_with(|s| s.queue_type = events::settings::QueueType::Quorum).await;
    retried_dead_lettered_and_replayed(&hub).await;
    let (connection, channel) = hub.broker.connect().await;
    let classic = channel
        .queue_declare(
            hub.settings.queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect_err("the queue is a quorum queue: declaring it classic is refused");
    assert!(classic.to_string().contains("x-queue-type"), "{classic}");
    let _ = connection.close(200, "done".into()).await;
}

async fn retried_dead_lettered_and_replayed(hub: &Hub) {
    let handler = Arc::new(Recorder {
        failing: AtomicBool::new(true),
    });
    let health = BrokerHealth::new();
    hub.consumer(handler.clone(), &health);
    hub.relay(&health);
    wait_connected(&health).await;
    let failed = hub.record(7).await;

    let dlq = hub.settings.dead_letter_queue();
    assert_eq!(
        wait_depth(hub, &dlq, 1).await,
        1,
        "dead-lettered after {} retries",
        hub.settings.max_retries
    );
    let letters = events::dlq::list(&hub.broker.url, &hub.settings.queue, 10)
        .await
        .unwrap();
    assert_eq!(letters[0].id.as_deref(), Some(failed.to_string().as_str()));
    assert_eq!(letters[0].retries, hub.settings.max_retries);
    assert!(
        letters[0]
            .error
            .as_deref()
            .unwrap()
            .contains("failing on purpose")
    );
    assert!(
        hub.applied().await.is_empty(),
        "a failed attempt leaves nothing behind"
    );

    // Consumption goes on meanwhile.
    handler.failing.store(false, Ordering::SeqCst);
    hub.record(8).await;
    assert_eq!(hub.wait_applied(1).await, [8]);

    let report = events::dlq::replay(
        &hub.broker.url,
        &hub.settings.queue,
        &events::dlq::Selection::Ids(vec![failed]),
        100,
    )
    .await
    .unwrap();
    assert_eq!(report.replayed, [failed.to_string()]);
    assert_eq!(hub.wait_applied(2).await, [7, 8]);
    assert_eq!(hub.broker.depth(&dlq).await, 0);
}

#[tokio::test]
async fn replay_leaves_unselected_dead_letters_in_place() {
    let hub = hub().await;
    let handler = Arc::new(Recorder {
        failing: AtomicBool::new(true),
    });
    let health = BrokerHealth::new();
    hub.consumer(handler.clone(), &health);
    hub.relay(&health);
    wait_connected(&health).await;
    let first = hub.record(1).await;
    hub.record(2).await;
    let dlq = hub.settings.dead_letter_queue();
    assert_eq!(wait_depth(&hub, &dlq, 2).await, 2);
    handler.failing.store(false, Ordering::SeqCst);
    let report = events::dlq::replay(
        &hub.broker.url,
        &hub.settings.queue,
        &events::dlq::Selection::Ids(vec![first]),
        100,
    )
    .await
    .unwrap();
    assert_eq!(report.replayed.len(), 1);
    assert_eq!(report.kept, 1);
    assert_eq!(hub.wait_applied(1).await, [1]);
    assert_eq!(
        hub.broker.depth(&dlq).await,
        1,
        "the other stays dead-lettered"
    );
}

#[tokio::test]
async fn a_dead_letter_queue_that_does_not_exist_is_named_in_the_error() {
    let broker = TestBroker::new();
    let err = events::dlq::list(&broker.url, "no-such-service.events", 10)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no-such-service.events.dlq"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_with_its_password_masked() {
    let err = events::dlq::list("amqp://guest:sekret@127.0.0.1:1/%2f", "x.events", 10)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("sekret"),
        "{text}"
    );
}

/// A broker URL listing several nodes: the first that answers is used, and a message naming
/// them all masks every password.
#[tokio::test]
async fn a_list_of_brokers_is_tried_in_order_until_one_answers() {
    let broker = TestBroker::new();
    let list = format!("amqp://guest:sekret@127.0.0.1:1/%2f, {}", broker.url);
    let connection = events::broker::connect(&list, "a list of brokers")
        .await
        .expect("the second broker answers");
    assert!(connection.status().connected());
    connection.close(200, "done".into()).await.unwrap();

    let none = "amqp://guest:sekret@127.0.0.1:1/%2f,amqp://guest:sekret2@127.0.0.1:2/%2f";
    let err = events::dlq::list(none, "x.events", 10)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("127.0.0.1:1") && err.contains("127.0.0.1:2") && !err.contains("sekret"),
        "{err}"
    );
}

async fn wait_depth(hub: &Hub, queue: &str, expected: u32) -> u32 {
    let reached = eventually(WAIT, || async {
        (hub.broker.depth(queue).await == expected).then_some(expected)
    })
    .await;
    match reached {
        Some(depth) => depth,
        None => hub.broker.depth(queue).await,
    }
}

#[tokio::test]
async fn replay_all_takes_each_dead_letter_once_even_when_it_fails_again() {
    let hub = hub_with(|s| s.max_retries = 0).await;
    let handler = Arc::new(Recorder {
        failing: AtomicBool::new(true),
    });
    let health = BrokerHealth::new();
    hub.consumer(handler.clone(), &health);
    hub.relay(&health);
    wait_connected(&health).await;
    hub.record(1).await;
    hub.record(2).await;
    let dlq = hub.settings.dead_letter_queue();
    assert_eq!(wait_depth(&hub, &dlq, 2).await, 2);

    // Still failing: each replayed event is dead-lettered again at once, behind the others.
    let report = events::dlq::replay(
        &hub.broker.url,
        &hub.settings.queue,
        &events::dlq::Selection::All,
        1000,
    )
    .await
    .unwrap();
    let mut replayed = report.replayed.clone();
    replayed.sort();
    replayed.dedup();
    assert_eq!(
        replayed.len(),
        report.replayed.len(),
        "no event replayed twice"
    );
    assert!(report.replayed.len() <= 2, "{report:?}");
    assert_eq!(wait_depth(&hub, &dlq, 2).await, 2, "nothing lost");
}

#[tokio::test]
async fn a_replay_into_a_queue_that_does_not_exist_keeps_the_dead_letter() {
    let hub = hub().await;
    hub.broker
        .declare_consumer(&hub.settings, &["thing.#"])
        .await;
    let dlq = hub.settings.dead_letter_queue();
    hub.broker
        .send_to_queue(&dlq, br#"{"not":"an envelope"}"#, "kept-1")
        .await;
    let (connection, channel) = hub.broker.connect().await;
    channel
        .queue_delete(
            hub.settings.queue.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;

    let err = events::dlq::replay(
        &hub.broker.url,
        &hub.settings.queue,
        &events::dlq::Selection::All,
        10,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&hub.settings.queue), "{err}");
    assert_eq!(hub.broker.depth(&dlq).await, 1, "the dead letter stays");
}

#[tokio::test]
async fn a_payload_serde_json_cannot_represent_does_not_stop_the_events_after_it() {
    let hub = hub().await;
    let first = hub.record(1).await;
    // jsonb keeps any numeric; 1e400 is beyond f64, which a serde_json::Value would need.
    sqlx::query(
        "INSERT INTO svc.outbox (id, event_type, payload) \
         VALUES (gen_random_uuid(), 'thing.happened', '{\"n\": 2, \"big\": 1e400}')",
    )
    .execute(&hub.pool)
    .await
    .unwrap();
    let third = hub.record(3).await;
    let health = BrokerHealth::new();
    hub.relay(&health);
    let drained = eventually(WAIT, || async {
        (hub.outbox().backlog(&hub.pool).await.unwrap() == 0).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "the relay is stuck on the row it cannot read"
    );
    let published: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM svc.outbox WHERE id = ANY($1) AND published_at IS NOT NULL",
    )
    .bind(vec![first, third])
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(published, 2);
}

/// A database frozen by a migration (its tables refuse writes with SQLSTATE 25006, as `mfe migrate
/// cutover` and `rollback` freeze them) is an outage to wait out: the event is retried without
/// counting towards the dead-letter queue, and applied once the database takes writes again.
#[tokio::test]
async fn a_read_only_database_is_waited_out_never_dead_lettered() {
    let hub = hub().await;
    let freeze = "CREATE FUNCTION svc.refuse() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN RAISE EXCEPTION 'frozen by the test' USING ERRCODE = 'read_only_sql_transaction'; END
        $f$;
        CREATE TRIGGER frozen BEFORE INSERT OR UPDATE OR DELETE ON svc.applied
            FOR EACH STATEMENT EXECUTE FUNCTION svc.refuse();";
    sqlx::raw_sql(freeze).execute(&hub.pool).await.unwrap();
    let handler = Arc::new(Recorder {
        failing: AtomicBool::new(false),
    });
    let health = BrokerHealth::new();
    hub.consumer(handler, &health);
    hub.relay(&health);
    wait_connected(&health).await;
    hub.record(11).await;
    // Long enough for every retry to be used up, were the refusal counted.
    tokio::time::sleep(WAIT).await;
    let dlq = hub.settings.dead_letter_queue();
    assert_eq!(hub.broker.depth(&dlq).await, 0, "nothing dead-lettered");
    assert!(hub.applied().await.is_empty());
    sqlx::raw_sql("DROP TRIGGER frozen ON svc.applied")
        .execute(&hub.pool)
        .await
        .unwrap();
    assert_eq!(hub.wait_applied(1).await, [11]);
    assert_eq!(hub.broker.depth(&dlq).await, 0);
}

/// Records the trace context each event was handled in.
#[derive(Default)]
struct TraceRecorder(std::sync::Mutex<Vec<(String, String)>>);

impl Handler for TraceRecorder {
    fn handle<'a>(&'a self, _tx: &'a mut PgConnection, _event: &'a Envelope) -> HandlerFuture<'a> {
        Box::pin(async move {
            let ids = platform::otel::current_ids().ok_or("handled outside any trace")?;
            self.0.lock().unwrap().push(ids);
            Ok(())
        })
    }
}

#[tokio::test]
async fn an_events_trace_context_is_kept_with_its_row_published_in_its_headers_and_continued() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    // Traced in this test's thread (the current-thread runtime runs the relay's and the
    // consumer's tasks there too).
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let _traced = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
    );
    let hub = hub().await;
    let health = BrokerHealth::new();

    // Recorded in a request's span while no relay runs, as when a crash came before publishing.
    let span = tracing::info_span!("request");
    let (trace_id, request_span) = span.in_scope(platform::otel::current_ids).unwrap();
    hub.record(1).instrument(span).await;
    let kept: serde_json::Value = sqlx::query_scalar("SELECT trace_context FROM svc.outbox")
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(
        kept["traceparent"],
        format!("00-{trace_id}-{request_span}-01"),
        "{kept}"
    );

    // A relay started afterwards publishes it with the context in its headers: the trace, and
    // its own producer span.
    let mut watcher = hub.broker.watch(&["thing.#"]).await;
    let relay = hub.relay(&health);
    let delivery = watcher
        .next_delivery(WAIT)
        .await
        .expect("the event is published");
    let traceparent = events::consumer::header_string(&delivery.properties, "traceparent")
        .expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "{traceparent}");
    assert_ne!(
        parts[2], request_span,
        "the producer's own span: {traceparent}"
    );

    // A consumer handles it in that trace.
    hub.broker
        .declare_consumer(&hub.settings, &["thing.#"])
        .await;
    hub.record(2)
        .instrument(tracing::info_span!("second"))
        .await;
    let recorder = Arc::new(TraceRecorder::default());
    let consumer = hub.consumer(recorder.clone(), &health);
    let handled = eventually(WAIT, || async {
        let seen = recorder.0.lock().unwrap().clone();
        (!seen.is_empty()).then_some(seen)
    })
    .await
    .expect("the event is handled");
    assert_ne!(
        handled[0].0, trace_id,
        "the second event has a trace of its own"
    );
    let second: serde_json::Value =
        sqlx::query_scalar("SELECT trace_context FROM svc.outbox ORDER BY seq DESC LIMIT 1")
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert!(
        second["traceparent"]
            .as_str()
            .unwrap()
            .contains(&handled[0].0),
        "the handler runs in the trace of the span that recorded its event: {second}"
    );
    relay.abort();
    consumer.abort();
}
