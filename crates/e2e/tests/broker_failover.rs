//! A three-node RabbitMQ cluster (scripts/cluster.sh) with quorum queues: while users register
//! and pay, the node leading the services' queues, which every service is connected to, is
//! SIGKILLed, and started again later. Every registration gets exactly one profile and every
//! payment answered 2xx is audited exactly once; the services reconnect to the nodes left
//! (`RABBITMQ_URL` lists the three). Runs alone (nextest profile `outages`): three more Erlang
//! VMs load the machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::{Platform, ServiceProcess, free_port};
use test_support::{Api, TestDb, eventually};

const USERS: usize = 150;
const PAYMENTS: usize = 150;
const BOB: &str = "bob-broker-failover@example.com";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh")
}

fn cluster(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .arg("rabbit")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/cluster.sh: {e}"));
    assert!(
        out.status.success(),
        "scripts/cluster.sh rabbit {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The node leading `queue` (a quorum queue), as 1 to 3, as node `ask` sees it.
fn leader_of(queue: &str, ask: u8) -> Option<u8> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", &format!("mfe-rabbit-{ask}@localhost")])
        .args(["list_queues", "name", "leader"])
        .output()
        .ok()?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(queue))?;
    line.split_whitespace()
        .nth(1)?
        .strip_prefix("mfe-rabbit-")?
        .split('@')
        .next()?
        .parse()
        .ok()
}

/// Starts a killed node again when dropped, so a failing test leaves the cluster whole.
struct StartOnDrop(u8);

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["rabbit", "start", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_registering_and_paying_while_the_queues_leader_dies_get_one_profile_and_one_audit_each()
 {
    cluster(&["up"]);
    let mut platform = Platform::new();
    // Node 1 first: every service connects to it, and the queues it declares are led there.
    platform.broker.url = cluster(&["url"]);
    let quorum = |mut env: Vec<(String, String)>| {
        env.push(("EVENTS_QUEUE_TYPE".into(), "quorum".into()));
        env
    };
    let auth = ServiceProcess::start("auth-service", &quorum(platform.auth_env_with_clients()));
    let mut profile_env = quorum(platform.broker.env("profile-service"));
    profile_env.extend([
        (
            "PROFILE_DATABASE_URL".to_string(),
            platform.profile_db.url.clone(),
        ),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
    ]);
    let profile = ServiceProcess::start("profile-service", &profile_env);
    let admin_db = TestDb::unborn();
    let admin = ServiceProcess::start(
        "admin-service",
        &quorum(platform.admin_env(&admin_db.url, &auth)),
    );
    let (payments_port, psp_port) = (free_port(), free_port());
    let _psp = e2e::start_sandbox(psp_port, Some(payments_port), &[]);
    let payments_db = TestDb::unborn();
    let payments = ServiceProcess::start(
        "payments-service",
        &quorum(platform.payments_env(&payments_db.url, payments_port, &auth, psp_port)),
    );
    for service in [&auth, &profile, &admin, &payments] {
        service.wait_ready(Duration::from_secs(30)).await;
    }
    let alice = platform
        .sign_up(&auth, "alice-broker-failover@example.com")
        .await;
    platform.sign_up(&auth, BOB).await;
    let queue = platform.broker.queue_for("profile-service");
    let leader = leader_of(&queue, 1).expect("profile's queue has a leader");
    let survivor = leader % 3 + 1;

    let registrations = e2e::register_in_background(
        auth.base.clone(),
        "failover",
        USERS,
        Duration::from_millis(20),
    );
    let paid = e2e::pay_in_background(
        Api::new(payments.base.clone()),
        alice,
        BOB,
        PAYMENTS,
        Duration::from_millis(30),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = StartOnDrop(leader);
    eprintln!("killing node {leader}, which leads {queue}");
    cluster(&["kill", &leader.to_string()]);
    let new_leader = eventually(Duration::from_secs(30), || async {
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || leader_of(&queue, survivor))
            .await
            .ok()
            .flatten()
            .filter(|n| *n != leader)
    })
    .await;
    assert!(new_leader.is_some(), "another node leads the queue");

    // All of it with the node still down: the services went on on the other two.
    let ids = registrations.await.unwrap();
    let profiles = platform.profiles().await;
    let all_there = eventually(Duration::from_secs(90), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT user_id) FROM user_profiles WHERE user_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(&profiles)
        .await
        .unwrap_or(0);
        (n == USERS as i64).then_some(())
    })
    .await
    .is_some();
    assert!(
        all_there,
        "not every registration got its profile\n--- profile logs:\n{}\n--- auth logs:\n{}",
        profile.logs(),
        auth.logs()
    );
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_profiles WHERE user_id = ANY($1)")
            .bind(&ids)
            .fetch_one(&profiles)
            .await
            .unwrap();
    assert_eq!(rows, USERS as i64, "one profile each");
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM profile.processed_events WHERE event_type = 'user.registered'",
    )
    .fetch_one(&profiles)
    .await
    .unwrap();
    // The load's registrations, and the payer's and the payee's before it.
    assert_eq!(applied, USERS as i64 + 2, "each registration applied once");
    let accepted: Vec<String> = paid.await.unwrap().into_iter().map(|(id, _)| id).collect();
    eprintln!("{} of {PAYMENTS} payments answered 2xx", accepted.len());
    assert!(
        !accepted.is_empty(),
        "payments answered while a node was down"
    );
    let audits = admin_db.pool().await;
    let audited = |ids: Vec<String>| {
        let audits = audits.clone();
        async move {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT resource_id, count(*) FROM audit_logs \
                 WHERE action = 'payment.created' AND resource_id = ANY($1) GROUP BY 1",
            )
            .bind(ids)
            .fetch_all(&audits)
            .await
            .unwrap_or_default()
        }
    };
    let all_audited = eventually(Duration::from_secs(90), || async {
        (audited(accepted.clone()).await.len() == accepted.len()).then_some(())
    })
    .await
    .is_some();
    assert!(
        all_audited,
        "not every payment was audited\n--- admin logs:\n{}\n--- payments logs:\n{}",
        admin.logs(),
        payments.logs()
    );
    let twice: Vec<_> = audited(accepted.clone())
        .await
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "audited more than once: {twice:?}");
    for service in [&auth, &profile, &admin, &payments] {
        service.wait_ready(Duration::from_secs(30)).await;
    }

    // Started again, the node rejoins, and a registration still gets its profile.
    drop(restart);
    assert!(cluster(&["status"]).lines().all(|l| l.ends_with("running")));
    let late = platform.register(&auth, "failover-late@example.com").await;
    let found = eventually(Duration::from_secs(30), || async {
        (e2e::profile_count(&profiles, &late).await == 1).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "a registration after the restart gets its profile"
    );
}
