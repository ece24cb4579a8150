//! With `PSP_SANDBOX_DATA_FILE`, a restarted sandbox knows its charges and finishes what the
//! previous run left: pending settlements, undelivered webhooks, a refused first POST.

use std::path::PathBuf;

use axum::http::StatusCode;

use crate::helpers::{Receiver, TestSandbox, charge, reference, settings};

/// A data file no other test uses, removed when dropped.
struct DataFile(PathBuf);

impl DataFile {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("psp-sandbox-{}.jsonl", uuid::Uuid::new_v4())))
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn spawn_on(file: &DataFile, receiver: &Receiver) -> TestSandbox {
    let mut settings = settings(receiver);
    settings.data_file = Some(file.0.clone());
    TestSandbox::spawn(settings).await
}

#[tokio::test]
async fn charges_survive_a_restart() {
    let file = DataFile::new();
    let receiver = Receiver::spawn().await;
    let reference = reference();
    let sandbox = spawn_on(&file, &receiver).await;
    let (status, _, created) = sandbox.create(&charge(&reference, "12.34")).await;
    assert_eq!(status, StatusCode::CREATED);
    receiver.accepted(&reference).await;
    sandbox.stop().await;

    let sandbox = spawn_on(&file, &receiver).await;
    assert_eq!(sandbox.charge(&reference).await, created);
    let (status, replayed, again) = sandbox.create(&charge(&reference, "12.34")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed);
    assert_eq!(again["id"], created["id"]);
    assert_eq!(again["attempts"], 2);
    let (status, _, body) = sandbox.create(&charge(&reference, "99.00")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    sandbox.stop().await;

    let sandbox = spawn_on(&file, &receiver).await;
    assert_eq!(sandbox.charge(&reference).await["attempts"], 2);
    assert_eq!(
        receiver.deliveries_for(&reference).len(),
        1,
        "a delivered webhook is not sent again after a restart"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn a_charge_pending_at_shutdown_settles_after_the_restart() {
    let file = DataFile::new();
    let receiver = Receiver::spawn().await;
    let reference = reference();
    let sandbox = spawn_on(&file, &receiver).await;
    let (_, _, created) = sandbox.create(&charge(&reference, "3001.00")).await;
    assert_eq!(created["status"], "pending");
    sandbox.stop().await;
    assert!(receiver.deliveries_for(&reference).is_empty());

    let sandbox = spawn_on(&file, &receiver).await;
    let settled = sandbox.settled(&reference, "declined").await;
    assert_eq!(settled["id"], created["id"]);
    let delivery = receiver.accepted(&reference).await;
    assert_eq!(delivery.event["type"], "charge.declined");
    sandbox.stop().await;
}

#[tokio::test]
async fn a_webhook_undelivered_at_shutdown_is_sent_after_the_restart() {
    let file = DataFile::new();
    let receiver = Receiver::spawn().await;
    receiver.fail_next(1);
    let reference = reference();
    let sandbox = spawn_on(&file, &receiver).await;
    sandbox.create(&charge(&reference, "12.34")).await;
    crate::helpers::eventually(crate::helpers::WAIT, || async {
        (!receiver.deliveries_for(&reference).is_empty()).then_some(())
    })
    .await
    .expect("a first, refused attempt");
    sandbox.stop().await;
    let refused = receiver.deliveries_for(&reference);
    assert_eq!(refused.len(), 1, "stopped before the retry");

    let sandbox = spawn_on(&file, &receiver).await;
    let delivery = receiver.accepted(&reference).await;
    assert_eq!(delivery.event["id"], refused[0].event["id"]);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_refused_first_post_is_remembered_across_a_restart() {
    let file = DataFile::new();
    let receiver = Receiver::spawn().await;
    let reference = reference();
    let sandbox = spawn_on(&file, &receiver).await;
    let (status, _, _) = sandbox.create(&charge(&reference, "5000.00")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    sandbox.stop().await;

    let sandbox = spawn_on(&file, &receiver).await;
    let (status, _, body) = sandbox.create(&charge(&reference, "5000.00")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["attempts"], 2);
    sandbox.stop().await;
}
