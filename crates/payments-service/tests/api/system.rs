use test_support::TestDb;
use test_support::spawn::{config, serve};

#[tokio::test]
async fn system_routes_answer() {
    let db = TestDb::new().await;
    let config = config(payments_service::SERVICE, &db.url);
    let pool = platform::app::open_database(&config, &payments_service::MIGRATOR)
        .await
        .unwrap();
    let base = serve(payments_service::router(pool, &config)).await;
    test_support::probe::assert_system_routes(&base, "payments-service").await;
}
