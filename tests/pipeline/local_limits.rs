//! The HTTP API's throttles on the local stack, as template.yaml provisions them: a token
//! bucket per route (burst, then the rate per second), and API Gateway's own 429 before any
//! function runs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::TestApp;

/// One `POST /events` (an empty batch: whatever capture-form answers, it is not throttled).
async fn post_events(app: &TestApp) -> reqwest::Response {
    app.http
        .post(format!("{}/events", app.base_url))
        .json(&json!({ "events": [] }))
        .send()
        .await
        .expect("request")
}

/// Whether the answer is API Gateway's throttle, checking its exact shape when it is.
async fn throttled(response: reqwest::Response) -> bool {
    if response.status() != 429 {
        return false;
    }
    assert!(
        response.headers().get("retry-after").is_none(),
        "API Gateway's throttle sends no Retry-After"
    );
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body, json!({ "message": "Too Many Requests" }));
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_over_its_throttle_gets_api_gateways_429_alone_until_its_bucket_refills() {
    // POST /events: a burst of 2, then one a second; the other routes keep the test stacks' own.
    let app =
        TestApp::spawn_with(&["EventsThrottleRateLimit=1", "EventsThrottleBurstLimit=2"]).await;

    // All at once: the burst is admitted, the rest refused, but for what the time taken
    // refilled (one a second).
    let started = Instant::now();
    let answers = futures::future::join_all((0..8).map(|_| post_events(&app))).await;
    let elapsed = started.elapsed();
    let mut refused = 0;
    for answer in answers {
        if throttled(answer).await {
            refused += 1;
        }
    }
    let admitted = 8 - refused;
    let refilled = elapsed.as_secs_f64().floor() as usize;
    assert!(
        (2..=2 + refilled).contains(&admitted),
        "{admitted} admitted in {elapsed:?} with a burst of 2 at 1/s"
    );

    // POST /leads has a bucket of its own: the empty /events bucket does not touch it.
    let lead = app
        .post_json(&json!({ "email": "throttle@example.com" }))
        .await;
    assert_eq!(lead.status(), 201, "POST /leads is not throttled");

    // Nor does the preflight of /events, another route.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/events", app.base_url))
        .send()
        .await
        .expect("request");
    assert_ne!(preflight.status(), 429, "OPTIONS /events is another route");

    // Empty now; a second later it holds a token again.
    while !throttled(post_events(&app).await).await {}
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        !throttled(post_events(&app).await).await,
        "the bucket refills at 1 a second"
    );
}
