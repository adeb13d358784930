//! The routes for sales and marketing tools: a lead with its timeline, BANT on a lead, and
//! segments by interest.

use chrono::{Duration, Utc};
use leadflow_domain::ports::LeadStore;
use leadflow_domain::LeadId;
use serde_json::{json, Value};

use crate::support::{sqs_event, TestApp};

async fn lead(app: &TestApp, email: &str) -> LeadId {
    app.capture(&json!({ "email": email })).await
}

#[tokio::test(flavor = "multi_thread")]
async fn inside_sales_records_bant() {
    let app = TestApp::spawn().await;
    let id = lead(&app, "bant@example.com").await;
    let url = format!("{}/leads/{id}/qualification", app.base_url);
    let ok = app
        .http
        .patch(&url)
        .json(&json!({"budget": {"amount": 40000, "currency": "eur"}, "authority": "decision_maker", "need": "CRM for 30 reps", "timeframe": "this_quarter", "by": "rep-anna"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["complete"], true);
    let stored = app.store().get(id).await.unwrap().unwrap();
    // The lead as sales tools (and CRMs, through the delivery's link) read it.
    let read: Value = app
        .http
        .get(format!("{}/leads/{id}", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["lead"]["email"], "bant@example.com");
    assert_eq!(read["lead"]["bant"]["need"], "CRM for 30 reps");
    let actions: Vec<&str> = read["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["captured", "bant_updated"]);
    let missing = app
        .http
        .get(format!(
            "{}/leads/{}",
            app.base_url,
            LeadId::new_at(Utc::now())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bant = stored.bant.expect("BANT on the lead");
    assert_eq!(bant.budget.unwrap().currency, "EUR");
    assert_eq!(bant.by, "rep-anna");
    let timeline = app.store().timeline(id).await.unwrap();
    let entry = timeline
        .iter()
        .find(|e| e.action == "bant_updated")
        .expect("on the timeline");
    assert_eq!(entry.actor, leadflow_domain::Actor::User("rep-anna".into()));

    let partial = app
        .http
        .patch(&url)
        .json(&json!({"timeframe": "later", "by": "rep-ben"}))
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 200);
    let body: Value = partial.json().await.unwrap();
    assert_eq!(
        body["bant"]["need"], "CRM for 30 reps",
        "fields left out keep their value"
    );
    assert_eq!(body["bant"]["timeframe"], "later");

    let invalid = app
        .http
        .patch(&url)
        .json(&json!({"authority": "boss", "budget": {"amount": -1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    let fields = invalid.json::<Value>().await.unwrap()["fields"].clone();
    for name in ["authority", "budget", "by"] {
        assert!(fields[name].is_string(), "{name} is named: {fields}");
    }
    let unknown = app
        .http
        .patch(format!(
            "{}/leads/{}/qualification",
            app.base_url,
            LeadId::new_at(Utc::now())
        ))
        .json(&json!({"by": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let not_an_id = app
        .http
        .patch(format!("{}/leads/nope/qualification", app.base_url))
        .json(&json!({"by": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_id.status(), 404);
    let malformed = app
        .http
        .patch(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_list_leads_by_decayed_interest_page_by_page() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .unwrap();
    let score_event = app
        .stack
        .function("score-event")
        .unwrap()
        .sqs
        .clone()
        .unwrap();
    let keen = lead(&app, "keen@example.com").await;
    let casual = lead(&app, "casual@example.com").await;
    let other = lead(&app, "other@example.com").await;
    let mut n = 0;
    let mut send = |lead: LeadId, tag: &str, days_ago: i64| {
        n += 1;
        let at = (Utc::now() - Duration::days(days_ago)).to_rfc3339();
        let body = json!({"event_id": format!("seg-{n}"), "type": "page_view", "occurred_at": at, "tags": [tag], "lead_id": lead.to_string()});
        score_event(sqs_event(&format!("m{n}"), body.to_string()))
    };
    for _ in 0..3 {
        assert!(send(keen, "crm", 0).await.batch_item_failures.is_empty());
    }
    // One crm page view 60 days ago: two half-lives (30 days) → 0.25.
    assert!(send(casual, "crm", 60).await.batch_item_failures.is_empty());
    assert!(send(other, "analytics", 0)
        .await
        .batch_item_failures
        .is_empty());

    let get = |query: &str| {
        app.http
            .get(format!("{}/segments/crm/leads?{query}", app.base_url))
            .send()
    };
    let body: Value = get("min_weight=2").await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = body["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lead_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [keen.to_string()]);
    assert!((body["leads"][0]["weight"].as_f64().unwrap() - 3.0).abs() < 0.01);

    let body: Value = get("min_weight=0.2").await.unwrap().json().await.unwrap();
    assert_eq!(body["leads"].as_array().unwrap().len(), 2, "{body}");
    let casual_weight = body["leads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lead_id"] == casual.to_string())
        .unwrap()["weight"]
        .as_f64()
        .unwrap();
    assert!(
        (casual_weight - 0.25).abs() < 0.01,
        "decayed: {casual_weight}"
    );

    // Page by page.
    let first: Value = get("min_weight=0.2&limit=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["leads"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second: Value = get(&format!("min_weight=0.2&limit=1&cursor={cursor}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["leads"].as_array().unwrap().len(), 1);
    assert_ne!(first["leads"][0]["lead_id"], second["leads"][0]["lead_id"]);
    // A page never holds more than `limit`, even when low-interest members are skipped.
    let page: Value = get("min_weight=0&limit=2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["leads"].as_array().unwrap().len(), 2);
    let rest: Value = get(&format!(
        "min_weight=0&limit=2&cursor={}",
        page["next_cursor"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        rest["leads"].as_array().unwrap().len(),
        0,
        "only two leads like crm: {rest}"
    );

    let bad = get("limit=1000&min_weight=-1").await.unwrap();
    assert_eq!(bad.status(), 422);
    let fields = bad.json::<Value>().await.unwrap()["fields"].clone();
    assert!(
        fields["limit"].is_string() && fields["min_weight"].is_string(),
        "{fields}"
    );
}

/// A lead item that cannot be read is the service's fault, not the caller's: every route that
/// meets it answers 500 with an error id (the log has the cause under it), never a 503 that
/// invites retries and never a 4xx that blames the input.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_data_is_a_500_with_an_error_id() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = TestApp::spawn().await;
    let id = lead(&app, "damaged@example.com").await;
    // The stage is not one leadflow knows: the item no longer reads as a lead.
    app.dynamo
        .update_item()
        .table_name(app.table())
        .key("pk", AttributeValue::S(format!("LEAD#{id}")))
        .key("sk", AttributeValue::S("LEAD".into()))
        .update_expression("SET stage = :s")
        .expression_attribute_values(":s", AttributeValue::S("Zombie".into()))
        .send()
        .await
        .unwrap();
    let get = app
        .http
        .get(format!("{}/leads/{id}", app.base_url))
        .send()
        .await
        .unwrap();
    let patch = app
        .http
        .patch(format!("{}/leads/{id}/qualification", app.base_url))
        .json(&json!({"need": "x", "by": "rep-anna"}))
        .send()
        .await
        .unwrap();
    let capture = app
        .post_json(&json!({"email": "damaged@example.com", "company": "Again AG"}))
        .await;
    for (route, response) in [("GET", get), ("PATCH", patch), ("POST /leads", capture)] {
        assert_eq!(response.status(), 500, "{route}");
        assert!(response.headers().get("retry-after").is_none(), "{route}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error_id"].is_string(), "{route}: {body}");
        assert!(
            !body.to_string().contains("Zombie"),
            "{route}: no stored data in the answer"
        );
    }
}
