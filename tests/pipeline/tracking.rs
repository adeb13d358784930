//! POST /events: behavioural events validated one by one and queued for scoring.

use serde_json::{json, Value};

use crate::support::TestApp;

fn events_url(app: &TestApp) -> String {
    format!("{}/events", app.base_url)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_accepted_event_by_event_and_queued() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!({"events": [
        {"event_id": "e-1", "type": "page_view", "occurred_at": now, "url": "https://www.example.com/pricing", "tags": ["crm"], "visitor_id": "v-42"},
        {"event_id": "e-2", "type": "Download!", "occurred_at": now, "visitor_id": "v-42"},
        {"event_id": "e-3", "type": "download", "occurred_at": now, "tags": ["whitepaper"], "email": "Anna@Example.com"},
        {"event_id": "e-1", "type": "page_view", "occurred_at": now, "visitor_id": "v-42"}
    ]});
    let response = app
        .http
        .post(events_url(&app))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(
        body["results"][1]["errors"]["type"],
        "must be 1 to 64 characters of a-z, 0-9 and _"
    );
    assert_eq!(body["results"][0]["event_id"], "e-1");

    let queued = app.drain("ScoreEventQueue").await;
    let ids: Vec<&str> = queued
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "e-1 is queued once, e-3 once: {ids:?}");
    assert!(ids.contains(&"e-1") && ids.contains(&"e-3"));
    let e3 = queued.iter().find(|e| e["event_id"] == "e-3").unwrap();
    assert_eq!(
        e3["email"], "anna@example.com",
        "identities are normalised before queueing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_batches_are_4xx() {
    let app = TestApp::spawn().await;
    let post = |body: String, ct: &'static str| {
        app.http
            .post(events_url(&app))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_eq!(
        post("{\"events\": [".into(), "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("events=1".into(), "application/x-www-form-urlencoded")
            .await
            .unwrap()
            .status(),
        415
    );
    let empty = post(json!({"events": []}).to_string(), "application/json")
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    assert!(empty.json::<Value>().await.unwrap()["fields"]["events"].is_string());
    let now = chrono::Utc::now().to_rfc3339();
    let many: Vec<Value> = (0..101).map(|i| json!({"event_id": format!("e{i}"), "type": "page_view", "occurred_at": now, "visitor_id": "v"})).collect();
    assert_eq!(
        post(json!({"events": many}).to_string(), "application/json")
            .await
            .unwrap()
            .status(),
        422
    );
    let huge = json!({"events": [{"event_id": "x", "type": "page_view", "occurred_at": now, "visitor_id": "v", "url": format!("https://e.com/{}", "a".repeat(140 * 1024))}]});
    assert_eq!(
        post(huge.to_string(), "application/json")
            .await
            .unwrap()
            .status(),
        413
    );
    assert!(app.drain("ScoreEventQueue").await.is_empty());
}
