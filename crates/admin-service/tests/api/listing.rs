//! `GET /admin/audit-logs`: filters, and pages that neither skip nor repeat a row while rows
//! arrive.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use serde_json::json;

use crate::helpers::{event, spawn};

/// The ids of the rows a filter gives, over every page.
async fn ids(admin: &crate::helpers::TestAdmin, token: &str, filter: &str) -> Vec<String> {
    let reply = admin
        .get(&format!("/admin/audit-logs?limit=100&{filter}"), token)
        .await;
    assert_eq!(reply.status, 200, "{filter}: {}", reply.body);
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_filter_narrows_the_list() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let base = Utc::now() - Duration::days(10);
    let mut events = Vec::new();
    for (i, (kind, data)) in [
        (
            "payment.created",
            json!({"paymentId": "p-1", "senderId": "u-1", "note": "Rent for MARCH"}),
        ),
        (
            "payment.status_changed",
            json!({"paymentId": "p-1", "senderId": "u-1", "to": "completed"}),
        ),
        (
            "payment.created",
            json!({"paymentId": "p-2", "senderId": "u-2", "note": "100% off_sale"}),
        ),
        (
            "profile.updated",
            json!({"userId": "u-1", "profileId": "pr-1", "changedFields": ["bio"]}),
        ),
        ("user.updated", json!({"userId": "u-2", "name": "Bea"})),
        ("paymentsx.other", json!({"actorId": "u-3"})),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = event(kind, "test", data);
        e.occurred_at = base + Duration::hours(i as i64);
        admin.broker.publish(&e).await;
        events.push(e);
    }
    admin.wait_for_event(&token, events.last().unwrap()).await;
    let id = |i: usize| events[i].id.to_string();

    assert_eq!(
        ids(&admin, &token, "userId=u-1").await,
        [id(3), id(1), id(0)]
    );
    assert_eq!(
        ids(&admin, &token, "action=payment.created").await,
        [id(2), id(0)]
    );
    assert_eq!(
        ids(&admin, &token, "action=payment.*").await,
        [id(2), id(1), id(0)],
        "a prefix ends at its dot: paymentsx.other is not a payment event"
    );
    assert_eq!(
        ids(&admin, &token, "resourceType=user_profile").await,
        [id(3)]
    );
    assert_eq!(
        ids(&admin, &token, "resourceId=p-1&resourceType=payment").await,
        [id(1), id(0)]
    );
    let from = (base + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let to = (base + Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        ids(
            &admin,
            &token,
            &format!("from={}&to={}", enc(&from), enc(&to))
        )
        .await,
        [id(2), id(1)],
        "from is inclusive, to exclusive"
    );
    assert_eq!(
        ids(&admin, &token, "q=rent%20for%20march").await,
        [id(0)],
        "q ignores case"
    );
    assert_eq!(
        ids(&admin, &token, "q=100%25%20off_").await,
        [id(2)],
        "% and _ are literal"
    );
    assert_eq!(
        ids(&admin, &token, "q=100%25%20off%25").await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&admin, &token, "userId=u-1&action=payment.*").await,
        [id(1), id(0)]
    );

    for bad in [
        "limit=0",
        "limit=101",
        "cursor=not-a-cursor",
        "action=pay*ment",
        "q=",
        "from=yesterday",
    ] {
        let reply = admin.get(&format!("/admin/audit-logs?{bad}"), &token).await;
        assert!(
            reply.status == 422 || reply.status == 400,
            "{bad}: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            reply.body["error"]["code"].is_string(),
            "{bad}: {}",
            reply.body
        );
    }
    let reversed = format!("from={}&to={}", enc(&to), enc(&from));
    let reply = admin
        .get(&format!("/admin/audit-logs?{reversed}"), &token)
        .await;
    assert_eq!(reply.status, 422);
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_a_row_while_rows_arrive() {
    let admin = spawn().await;
    let token = admin.admin_token().await;
    let base = Utc::now() - Duration::hours(1);
    // Some share a timestamp, so the order also rests on the id.
    let mut first = Vec::new();
    for i in 0..40 {
        let mut e = event("test.row", "test", json!({"n": i}));
        e.occurred_at = base + Duration::seconds(i / 3);
        admin.broker.publish(&e).await;
        first.push(e.id.to_string());
    }
    admin.wait_for_rows(&token, "action=test.row", 40).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut arrivals = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/audit-logs?action=test.row&limit=7&cursor={c}"),
            None => "/admin/audit-logs?action=test.row&limit=7".to_string(),
        };
        let reply = admin.get(&path, &token).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        for row in reply.body["items"].as_array().unwrap() {
            seen.push(row["id"].as_str().unwrap().to_string());
        }
        // Between pages, rows arrive: new ones, and late ones from the past.
        for late in [false, true] {
            let mut e = event("test.row", "test", json!({"arrival": arrivals}));
            if late {
                e.occurred_at = base + Duration::seconds(arrivals % 13);
            }
            admin.broker.publish(&e).await;
            arrivals += 1;
        }
        match reply.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row came twice");
    for id in &first {
        assert!(unique.contains(id), "row {id} was skipped");
    }
}
