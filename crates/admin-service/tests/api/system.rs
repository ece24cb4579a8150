use crate::helpers::spawn;

#[tokio::test]
async fn system_routes_answer() {
    let admin = spawn().await;
    test_support::probe::assert_system_routes(&admin.api.base, "admin-service").await;
}
