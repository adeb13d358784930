//! Per-client rate limits of the public routes, on the local stack: the same handlers, the
//! same buckets in the table, the client address as API Gateway reports it (the TCP peer).
//! A second client is a second loopback address (127.0.0.2).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::TestApp;

/// A client connecting from `ip` (any 127.x.y.z reaches the local server on Linux).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    leadflow_local::http_client_builder()
        .local_address(IpAddr::from(ip))
        .build()
        .expect("a client")
}

async fn post_lead(http: &reqwest::Client, app: &TestApp, email: &str) -> reqwest::Response {
    http.post(app.leads_url())
        .header("idempotency-key", format!("key-{email}"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .expect("request")
}

/// The Retry-After of a 429, after checking the answer's shape.
async fn refusal(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "a JSON answer"
    );
    let body: Value = response.json().await.expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["retry_after_seconds"], retry_after, "{body}");
    retry_after
}

/// Every item of the table, as text (to look for what must not be there).
async fn table_text(app: &TestApp) -> String {
    let out = app
        .dynamo
        .scan()
        .table_name(app.table())
        .consistent_read(true)
        .send()
        .await
        .expect("scan");
    format!("{:?}", out.items())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_limit_is_refused_alone_stores_nothing_and_is_admitted_again() {
    // A burst of 3, then one every 3 s.
    let app = TestApp::spawn_with(&[
        "LeadsRateLimit=20/min burst 3",
        "EventsRateLimit=20/min burst 3",
    ])
    .await;
    let first = client_from([127, 0, 0, 1]);

    // Until the first refusal; a slow emulator may let a refilled token through, but never
    // more than the burst plus what the time taken refilled.
    let started = Instant::now();
    let mut admitted = Vec::new();
    let mut refused = None;
    for n in 0..12 {
        let email = format!("visitor{n}@example.com");
        let response = post_lead(&first, &app, &email).await;
        if response.status() == 429 {
            refused = Some((email, response));
            break;
        }
        assert!(response.status().is_success(), "{}", response.status());
        admitted.push(email);
    }
    let elapsed = started.elapsed();
    let (refused_email, response) = refused.expect("the client was refused");
    let allowed = 3 + (elapsed.as_millis() / 3000) as usize;
    assert!(
        (3..=allowed).contains(&admitted.len()),
        "{} admitted in {elapsed:?}",
        admitted.len()
    );
    let retry_after = refusal(response).await;
    assert!((1..=3).contains(&retry_after), "{retry_after}");

    // Nothing of the refused request was stored: no lead, no idempotency record; and no
    // client address is in the table.
    assert_eq!(app.items("lead").await.len(), admitted.len());
    let text = table_text(&app).await;
    assert!(
        !text.contains(&refused_email),
        "the refused request left a trace"
    );
    let buckets = app.items("rate_limit").await;
    assert_eq!(buckets.len(), 1, "one bucket");
    assert!(!format!("{buckets:?}").contains("127.0.0"), "{buckets:?}");

    // Another client is not affected, and the first one's other route has its own bucket.
    let second = client_from([127, 0, 0, 2]);
    let other = post_lead(&second, &app, "neighbour@example.com").await;
    assert!(other.status().is_success(), "{}", other.status());
    let events = first
        .post(format!("{}/events", app.base_url))
        .json(&json!({ "events": [{ "event_id": "e-1", "type": "page_view", "visitor_id": "v-1", "occurred_at": chrono::Utc::now() }] }))
        .send()
        .await
        .expect("request");
    assert_eq!(events.status(), 202);

    // Concurrent requests of one client cannot spend a token twice.
    let burst = client_from([127, 0, 0, 4]);
    let started = Instant::now();
    let statuses = futures::future::join_all((0..10).map(|i| {
        burst
            .post(format!("{}/events", app.base_url))
            .json(&json!({ "events": [{ "event_id": format!("c-{i}"), "type": "page_view", "visitor_id": "v-2", "occurred_at": chrono::Utc::now() }] }))
            .send()
    }))
    .await;
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = statuses
        .into_iter()
        .map(|r| r.expect("request").status().as_u16())
        .collect();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert_eq!(
        accepted + statuses.iter().filter(|s| **s == 429).count(),
        10,
        "{statuses:?}"
    );
    assert!(
        (3..=3 + (elapsed.as_millis() / 3000) as usize).contains(&accepted),
        "{statuses:?} in {elapsed:?}"
    );

    // The bucket refills: after the wait it named, the first client is admitted again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = post_lead(&first, &app, "patient@example.com").await;
    assert!(again.status().is_success(), "{}", again.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_forged_crm_callbacks_is_refused_per_client() {
    let app = TestApp::spawn_with(&["CrmCallbackRateLimit=20/min burst 3"]).await;
    let forged = |http: reqwest::Client| {
        let url = format!("{}/crm/events", app.base_url);
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .header("webhook-id", "msg_forged")
                .header(
                    "webhook-timestamp",
                    chrono::Utc::now().timestamp().to_string(),
                )
                .header("webhook-signature", "v1,Zm9yZ2Vk")
                .body(r#"{"lead_id":"x","status":"won"}"#)
                .send()
                .await
                .expect("request")
        }
    };
    let flooder = client_from([127, 0, 0, 1]);
    let mut statuses = Vec::new();
    let refused = loop {
        let response = forged(flooder.clone()).await;
        if response.status() == 429 || statuses.len() == 12 {
            break response;
        }
        statuses.push(response.status().as_u16());
    };
    assert!(
        statuses.len() >= 3 && statuses.iter().all(|s| *s != 200),
        "{statuses:?}"
    );
    refusal(refused).await;
    // Another client still reaches the signature check.
    let other = forged(client_from([127, 0, 0, 3])).await;
    assert_ne!(other.status(), 429);
    assert_ne!(other.status(), 200);
}
