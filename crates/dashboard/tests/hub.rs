//! The event hub's part of the view: each service queue's depth and consumers and its dead
//! letters, read from the real broker without taking anything; an unreachable broker is named
//! without its password.

use dashboard::collect::Collector;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use migrator::Endpoints;
use platform::Service;
use test_support::TestBroker;

fn endpoints() -> Endpoints {
    // Never connected to: the hub's read needs no database.
    let url = "postgres://postgres@127.0.0.1:5432/unused";
    Endpoints::new(url.into(), Service::ALL.map(|s| (s, url.to_string())))
}

#[tokio::test]
async fn each_service_queue_shows_its_depth_and_dead_letters_and_looking_takes_nothing() {
    let broker = TestBroker::new();
    let queue = broker.queue_for("profile-service");
    let dlq = events::settings::dead_letter_queue(&queue);
    let (connection, channel) = broker.connect().await;
    for name in [&queue, &dlq] {
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let _ = connection.close(200, "done".into()).await;
    for n in 0..3 {
        broker.send_to_queue(&queue, b"{}", &format!("m{n}")).await;
    }
    broker.send_to_queue(&dlq, b"{}", "dead").await;

    let collector =
        Collector::new(&endpoints(), Some(broker.url.clone()), Some(&broker.prefix)).unwrap();
    for _ in 0..2 {
        let depths = collector.hub().await.expect("a broker is set").unwrap();
        // Only the queues that exist: the other services' were never declared here.
        assert_eq!(
            depths,
            vec![events::dlq::QueueDepth {
                queue: queue.clone(),
                messages: 3,
                consumers: 0,
                dead_letters: 1,
            }]
        );
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_without_its_password() {
    let collector = Collector::new(
        &endpoints(),
        Some("amqp://guest:hub-secret-pw@127.0.0.1:1/%2f".into()),
        None,
    )
    .unwrap();
    let error = collector.hub().await.unwrap().unwrap_err();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(!error.contains("hub-secret-pw"), "{error}");
    assert!(
        Collector::new(&endpoints(), None, None)
            .unwrap()
            .hub()
            .await
            .is_none()
    );
}

/// What the broker says reaches the snapshot and its Prometheus gauges.
#[tokio::test]
async fn the_view_shows_the_hub_in_its_snapshot_and_its_gauges() {
    let broker = TestBroker::new();
    let queue = broker.queue_for("admin-service");
    let dlq = events::settings::dead_letter_queue(&queue);
    let (connection, channel) = broker.connect().await;
    for name in [&queue, &dlq] {
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let _ = connection.close(200, "done".into()).await;
    broker.send_to_queue(&queue, b"{}", "ready").await;
    for n in 0..2 {
        broker.send_to_queue(&dlq, b"{}", &format!("dead{n}")).await;
    }
    // Read-only: the server's own maintenance database stands in for every database.
    let url = "postgres://postgres@127.0.0.1:5432/postgres";
    let endpoints = Endpoints::new(url.into(), Service::ALL.map(|s| (s, url.to_string())));
    let mut options = dashboard::Options::new("127.0.0.1:0".parse().unwrap());
    options.amqp_url = Some(broker.url.clone());
    options.queue_prefix = Some(broker.prefix.clone());
    let view = dashboard::Dashboard::start(&endpoints, options, None)
        .await
        .unwrap();
    view.refresh().await;
    let snapshot = view.latest();
    assert!(snapshot.hub.available, "{:?}", snapshot.hub);
    assert_eq!(
        snapshot.hub.queues,
        vec![events::dlq::QueueDepth {
            queue: queue.clone(),
            messages: 1,
            consumers: 0,
            dead_letters: 2,
        }]
    );
    let gauges = dashboard::prometheus::render(&snapshot);
    assert!(gauges.contains("mfe_hub_available 1\n"), "{gauges}");
    assert!(
        gauges.contains(&format!("mfe_hub_dead_letters{{queue=\"{queue}\"}} 2\n")),
        "{gauges}"
    );
    assert!(
        gauges.contains(&format!("mfe_hub_queue_messages{{queue=\"{queue}\"}} 1\n")),
        "{gauges}"
    );
}
