//! One trace per request across the services and the hub, with the real processes exporting to
//! an OTLP receiver (`http/protobuf`): a POST /payments made in a trace of the test's own ends up
//! as one trace holding the payments request, its auth lookup, the provider's charge, the relay's
//! publishing, admin's consumer and its audit insert, each with the right parent and links.

use std::time::Duration;

use e2e::{Platform, ServiceProcess};
use serde_json::json;
use test_support::otlp::{self, Receiver, Span};
use test_support::{Api, eventually};

const PAYMENTS_SECRET: &str = "e2e-payments-secret-0123";
const ADMIN_SECRET: &str = "e2e-admin-secret-0123456";

/// What every process needs to export its spans to `receiver`, quickly.
fn traced(env: &mut Vec<(String, String)>, receiver: &Receiver) {
    env.extend([
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            receiver.endpoint.clone(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]);
}

fn one<'a>(spans: &'a [Span], what: &str, found: impl Fn(&Span) -> bool) -> &'a Span {
    let matching: Vec<&Span> = spans.iter().filter(|s| found(s)).collect();
    assert!(
        !matching.is_empty(),
        "no span for {what} in the trace: {:#?}",
        names(spans)
    );
    matching[0]
}

fn names(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|s| format!("{} {} (kind {})", s.service, s.name, s.kind))
        .collect()
}

/// Whether `span` descends from `ancestor` within `spans`.
fn descends(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut at = span;
    for _ in 0..spans.len() {
        if at.parent_span_id == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == at.parent_span_id) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

#[tokio::test]
async fn one_payment_request_is_one_trace_across_the_services_and_the_hub() {
    let receiver = Receiver::start().await;
    let platform = Platform::new();
    let migrated = platform.migrate_legacy(11);

    let mut auth_env = platform.auth_env();
    auth_env.push((
        "AUTH_SERVICE_CLIENTS".into(),
        format!("payments-service={PAYMENTS_SECRET},admin-service={ADMIN_SECRET}"),
    ));
    traced(&mut auth_env, &receiver);
    let auth = ServiceProcess::start("auth-service", &auth_env);
    let mut admin_env = platform.broker.env("admin-service");
    admin_env.extend([
        (
            "ADMIN_DATABASE_URL".to_string(),
            migrated.admin_db.url.clone(),
        ),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("ADMIN_AUTH_CLIENT_SECRET".into(), ADMIN_SECRET.into()),
    ]);
    traced(&mut admin_env, &receiver);
    let admin = ServiceProcess::start("admin-service", &admin_env);
    admin.wait_ready(Duration::from_secs(15)).await;
    let psp_port = e2e::free_port();
    let mut psp_env = vec![("PSP_SANDBOX_LATENCY_MS".to_string(), "0".to_string())];
    traced(&mut psp_env, &receiver);
    let psp_settings: Vec<(&str, &str)> = psp_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _sandbox = e2e::start_sandbox(psp_port, None, &psp_settings);
    let mut payments_env = platform.broker.env("payments-service");
    payments_env.extend([
        (
            "PAYMENTS_DATABASE_URL".to_string(),
            migrated.payments_db.url.clone(),
        ),
        ("AUTH_SERVICE_URL".into(), auth.base.clone()),
        ("PAYMENTS_AUTH_CLIENT_SECRET".into(), PAYMENTS_SECRET.into()),
        ("PSP_WEBHOOK_SECRET".into(), e2e::WEBHOOK_SECRET.into()),
        ("PSP_URL".into(), format!("http://127.0.0.1:{psp_port}")),
    ]);
    traced(&mut payments_env, &receiver);
    let payments = ServiceProcess::start("payments-service", &payments_env);
    for service in [&auth, &payments] {
        service.wait_ready(Duration::from_secs(15)).await;
    }

    let auth_api = Api::new(auth.base.clone());
    let login = auth_api
        .post(
            "/auth/login",
            None,
            &json!({"email": "alice@legacy.test", "password": "alice-legacy-2024"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.body["accessToken"].as_str().unwrap().to_string();

    // The test's own span: the caller of POST /payments.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let caller_span = "00f067aa0ba902b7";
    let paid = reqwest::Client::new()
        .post(format!("{}/payments", payments.base))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"recipientEmail": "bob@legacy.test", "amount": "5.00", "type": "instant"}))
        .send()
        .await
        .unwrap();
    assert!(paid.status().is_success(), "{}", paid.status());
    assert!(
        paid.headers().get("traceparent").is_none(),
        "the trace context is not echoed"
    );

    // Everything the payment caused, once admin has audited its three events and each process
    // has exported its spans (the payments request ends after the audit may have begun).
    let spans = eventually(Duration::from_secs(30), || async {
        let spans = receiver.trace(&trace_id);
        let count = |service: &str, name: &str| {
            spans
                .iter()
                .filter(|s| s.service == service && s.name == name)
                .count()
        };
        // Every call payments made shows the callee's side too.
        let answered = spans
            .iter()
            .filter(|c| c.service == "payments-service" && c.kind == otlp::CLIENT)
            .all(|c| spans.iter().any(|s| s.parent_span_id == c.span_id));
        let complete = count("admin-service", "INSERT audit_logs") >= 3
            && count("payments-service", "POST /payments") == 1
            && answered;
        complete.then_some(spans)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the payment's trace never held three audit inserts: {:#?}",
            names(&receiver.trace(&trace_id))
        )
    });

    let request = one(&spans, "the payments request", |s| {
        s.service == "payments-service" && s.kind == otlp::SERVER && s.name == "POST /payments"
    });
    assert_eq!(
        request.parent_span_id, caller_span,
        "it continues the caller's span"
    );

    let lookup = one(&spans, "payments' call to auth", |s| {
        s.service == "payments-service"
            && s.kind == otlp::CLIENT
            && s.name.starts_with("GET /users")
    });
    assert!(descends(&spans, lookup, request));
    let served = one(&spans, "auth serving the lookup", |s| {
        s.service == "auth-service" && s.kind == otlp::SERVER && s.parent_span_id == lookup.span_id
    });
    assert!(served.name.starts_with("GET /users"), "{}", served.name);

    let charge = one(&spans, "the provider call", |s| {
        s.service == "payments-service" && s.kind == otlp::CLIENT && s.name == "POST /charges"
    });
    assert!(descends(&spans, charge, request));
    let charged = one(&spans, "the sandbox serving the charge", |s| {
        s.service == "psp-sandbox" && s.kind == otlp::SERVER && s.parent_span_id == charge.span_id
    });
    assert_eq!(charged.name, "POST /charges");

    let publish = one(&spans, "the relay publishing payment.created", |s| {
        s.service == "payments-service"
            && s.kind == otlp::PRODUCER
            && s.name == "publish payment.created"
    });
    assert!(
        descends(&spans, publish, request),
        "the publish continues the request that recorded the event, though the relay runs apart"
    );
    assert_eq!(publish.attributes["messaging.system"], "rabbitmq");

    let consumed = one(&spans, "admin consuming payment.created", |s| {
        s.service == "admin-service"
            && s.kind == otlp::CONSUMER
            && s.name == "process payment.created"
    });
    assert_eq!(consumed.parent_span_id, publish.span_id);
    assert_eq!(
        consumed.links,
        [(trace_id.clone(), publish.span_id.clone())],
        "linked to the producer's span"
    );
    let insert = one(&spans, "admin's audit insert of payment.created", |s| {
        s.service == "admin-service"
            && s.name == "INSERT audit_logs"
            && s.parent_span_id == consumed.span_id
    });
    assert_eq!(insert.attributes["action"], "payment.created");

    // The payment's two status changes (processing, completed) too.
    let changes = spans
        .iter()
        .filter(|s| s.kind == otlp::CONSUMER && s.name == "process payment.status_changed")
        .count();
    assert_eq!(changes, 2, "{:#?}", names(&spans));
    // Nothing of another request came into it.
    assert!(spans.iter().all(|s| s.trace_id == trace_id));
}

#[test]
fn an_otlp_protocol_other_than_http_protobuf_stops_a_service_at_start() {
    let out = std::process::Command::new(e2e::binary("profile-service"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("PROFILE_SERVICE_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported")
            && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}
