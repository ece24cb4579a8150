//! Money round-trips exactly: any amount from JSON, through the database, back to JSON.

use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::helpers::spawn;

#[test]
fn any_amount_round_trips_to_the_cent_through_the_api_and_the_database() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (t, alice, bob) = runtime.block_on(async {
        let t = spawn().await;
        let alice = t.user("alice").await;
        let bob = t.user("bob").await;
        (t, alice, bob)
    });
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // Cents across the whole range, but none in the sandbox's reserved ranges (2000-5000.99).
    let cents = prop_oneof![1i64..200_000, 500_100i64..9_999_999_999];
    proptest!(config, |(cents in cents, short in any::<bool>())| {
        let amount = Decimal::new(cents, 2);
        let mut text = amount.to_string();
        if short && text.ends_with('0') {
            text.pop();
        }
        let (status, body, stored) = runtime.block_on(async {
            let reply = t
                .post("/payments", &alice.token, &crate::helpers::instant(&bob.email, &text))
                .await;
            let id = reply.body["id"].as_str().unwrap_or_default().to_string();
            let stored: Option<Decimal> = sqlx::query_scalar("SELECT amount FROM payments WHERE id = $1")
                .bind(&id)
                .fetch_optional(&t.pool)
                .await
                .unwrap();
            let read = t.get(&format!("/payments/{id}"), &alice.token).await;
            (reply.status.as_u16(), read.body, stored)
        });
        prop_assert_eq!(status, 201);
        prop_assert_eq!(stored, Some(amount));
        let mut expected = amount;
        expected.rescale(2);
        let shown = expected.to_string();
        prop_assert_eq!(body["amount"].as_str(), Some(shown.as_str()));
    });
}
