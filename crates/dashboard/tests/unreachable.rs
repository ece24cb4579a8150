//! A database the view cannot read is shown as such (its tables `unreachable`, a note naming it
//! without its password), and the page keeps being served.

use dashboard::collect::Collector;
use dashboard::{Dashboard, Options};
use migrator::Endpoints;
use platform::Service;

#[tokio::test]
async fn unreachable_databases_are_named_without_their_passwords_and_the_view_stays_up() {
    // Nothing listens on port 1.
    let url = "postgres://postgres:db-secret-pw@127.0.0.1:1/nowhere";
    let endpoints = Endpoints::new(url.into(), Service::ALL.map(|s| (s, url.to_string())));
    let view = Collector::new(&endpoints, None, None)
        .unwrap()
        .journal()
        .await;
    assert_eq!(view.tables.len(), schema::contract::TABLES.len());
    assert!(view.tables.iter().all(|t| t.state == "unreachable"));
    assert_eq!(view.problems.len(), 5, "{:?}", view.problems);
    for problem in &view.problems {
        assert!(!problem.contains("db-secret-pw"), "{problem}");
    }

    let dashboard = Dashboard::start(
        &endpoints,
        Options::new("127.0.0.1:0".parse().unwrap()),
        None,
    )
    .await
    .unwrap();
    let snapshot = dashboard.latest();
    assert_eq!(snapshot.mode, "journal");
    assert!(snapshot.tables.iter().all(|t| t.state == "unreachable"));
    assert!(
        snapshot
            .notes
            .iter()
            .any(|n| n.contains("auth-service database")),
        "{:?}",
        snapshot.notes
    );
    assert!(
        !serde_json::to_string(&*snapshot)
            .unwrap()
            .contains("db-secret-pw")
    );
    let page = tokio::net::TcpStream::connect(dashboard.local_addr()).await;
    assert!(page.is_ok(), "the view is served");
}
