//! Serving an app on a free port of 127.0.0.1 for a test.

use platform::{Env, Service, ServiceConfig};

/// A service configuration for a test: port 0 on loopback, the given database.
pub fn config(service: Service, database_url: &str) -> ServiceConfig {
    let mut env = Env::default();
    env.set(
        format!("{}_DATABASE_URL", service.env_prefix()),
        database_url,
    );
    let mut config = ServiceConfig::from_env(service, &env).expect("test configuration is valid");
    config.host = "127.0.0.1".into();
    config.port = 0;
    config
}

/// Serves `router` in the background; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(platform::server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    format!("http://{addr}")
}
