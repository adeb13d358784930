//! Tracking → scoring → qualification on the emulator, with the functions polling their
//! queues as Lambda would.

use chrono::{Duration, Utc};
use leadflow_domain::ports::{ConfigStore, LeadStore, ScoreStore};
use leadflow_domain::scoring::Points;
use leadflow_domain::Stage;
use serde_json::{json, Value};

use crate::support::{eventually, sqs_event, TestApp};

fn at(minutes_ago: i64) -> String {
    (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339()
}

/// docs/domain.md end to end: an anonymous visitor browses, submits the form, reads the pricing page
/// twice and downloads a whitepaper: the lead is MQL with an explanation that adds up, and
/// `LeadQualified` reaches the bus once.
#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_visitor_becomes_an_mql() {
    let app = TestApp::spawn_running(&["score-event", "qualify"]).await;
    app.post_events(json!([
        {"event_id": "anon-1", "type": "page_view", "occurred_at": at(30), "url": "https://www.example.com/products/crm", "tags": ["crm"], "visitor_id": "v-7f3a"},
        {"event_id": "anon-2", "type": "page_view", "occurred_at": at(29), "url": "https://www.example.com/blog/lead-scoring", "visitor_id": "v-7f3a"}
    ]))
    .await;
    // The anonymous events wait under the visitor id until someone claims them.
    let store = app.store();
    assert!(
        eventually(10, || async {
            store
                .anonymous_events("visitor:v-7f3a")
                .await
                .unwrap()
                .len()
                == 2
        })
        .await
    );

    let lead_id = app
        .capture(&json!({"email": "maria@example.de", "first_name": "Maria", "company": "Beispiel GmbH",
            "job_title": "Marketing Manager", "country": "DE", "industry": "Software", "visitor_id": "v-7f3a"}))
        .await;

    // Joined with their original times: the lead is engaged by fit and history.
    let engaged = eventually(20, || async {
        store
            .get(lead_id)
            .await
            .unwrap()
            .is_some_and(|l| l.stage == Stage::Engaged)
    })
    .await;
    assert!(
        engaged,
        "the lead became Engaged: {:?}",
        store
            .get(lead_id)
            .await
            .unwrap()
            .map(|l| (l.stage, l.qualification))
    );
    // Fit alone may make the lead Engaged before score-event has joined its history.
    let joined = eventually(20, || async {
        store
            .score(lead_id)
            .await
            .unwrap()
            .is_some_and(|s| s.state.kept_events() == 2)
    })
    .await;
    assert!(
        joined,
        "both anonymous events joined: {:?}",
        store
            .score(lead_id)
            .await
            .unwrap()
            .map(|s| s.state.kept_events())
    );

    // The pricing views as the site's back end reports them for the signed-in lead; the
    // download by the browser's visitor id, which the lead has claimed.
    crate::tracking::post_lead_events(&app, lead_id, json!([
        {"event_id": "p-1", "type": "page_view", "occurred_at": at(3), "url": "https://www.example.com/pricing"},
        {"event_id": "p-2", "type": "page_view", "occurred_at": at(2), "url": "https://www.example.com/pricing"}
    ]))
    .await;
    app.post_events(json!([
        {"event_id": "d-1", "type": "download", "occurred_at": at(1), "url": "https://www.example.com/whitepaper.pdf", "tags": ["whitepaper"], "visitor_id": "v-7f3a"}
    ]))
    .await;
    let mql = eventually(20, || async {
        store
            .get(lead_id)
            .await
            .unwrap()
            .is_some_and(|l| l.stage == Stage::Mql)
    })
    .await;
    let lead = store.get(lead_id).await.unwrap().unwrap();
    assert!(
        mql,
        "the lead became MQL: {:?} {:?}",
        lead.stage, lead.qualification
    );
    let q = lead.qualification.expect("qualification on the lead");
    assert_eq!(q.config_version, 1);

    // The pricing views may make it MQL before the download is scored: wait for all five.
    let all_scored = eventually(20, || async {
        store
            .score(lead_id)
            .await
            .unwrap()
            .is_some_and(|s| s.state.kept_events() == 5)
    })
    .await;
    assert!(all_scored, "all five events scored");
    let score = store.score(lead_id).await.unwrap().unwrap();
    let snapshot = score.snapshot.expect("the explanation is kept");
    let sum = snapshot.contributions.iter().fold(Points::ZERO, |acc, c| {
        Points::from_cents(acc.cents() + c.points.cents())
    });
    assert_eq!(
        sum, snapshot.score,
        "the explanation adds up: {:?}",
        snapshot.contributions
    );
    let rules: Vec<&str> = snapshot
        .contributions
        .iter()
        .map(|c| c.rule_id.as_str())
        .collect();
    for expected in [
        "pricing-page",
        "whitepaper-download",
        "page-view",
        "product-crm-page",
        "dach",
        "target-industry",
    ] {
        assert!(
            rules.contains(&expected),
            "{expected} explains the score: {rules:?}"
        );
    }
    assert_eq!(score.config_version, 1);

    // LeadQualified reached the bus exactly once (the route queue collects it; route is a stub).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let qualified: Vec<Value> = app
        .drain("RouteQueue")
        .await
        .into_iter()
        .filter(|e| e["detail-type"] == "LeadQualified")
        .collect();
    assert_eq!(qualified.len(), 1, "{qualified:?}");
    assert_eq!(qualified[0]["detail"]["lead_id"], lead_id.to_string());

    // Stage changes are on the timeline with the config version that made them.
    let timeline = store.timeline(lead_id).await.unwrap();
    let changes: Vec<_> = timeline
        .iter()
        .filter(|e| e.action == "stage_changed")
        .map(|e| (e.detail["to"].clone(), e.detail["config_version"].clone()))
        .collect();
    assert_eq!(
        changes,
        [(json!("Engaged"), json!(1)), (json!("MQL"), json!(1))]
    );
}

/// An event delivered twice scores once; a LeadScored delivered twice qualifies once.
#[tokio::test(flavor = "multi_thread")]
async fn duplicates_count_once() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .unwrap();
    let lead_id = app.capture(&json!({"email": "dup@example.com", "company": "ACME", "industry": "software", "country": "AT"})).await;
    let score_event = app
        .stack
        .function("score-event")
        .unwrap()
        .sqs
        .clone()
        .unwrap();
    let body = json!({"event_id": "twice", "type": "download", "occurred_at": at(1), "lead_id": lead_id.to_string(), "tags": ["whitepaper"]}).to_string();
    let event = || sqs_event(&uuid::Uuid::new_v4().to_string(), body.clone());
    assert!(score_event(event()).await.batch_item_failures.is_empty());
    assert!(score_event(event()).await.batch_item_failures.is_empty());
    let store = app.store();
    let score = store.score(lead_id).await.unwrap().unwrap();
    assert_eq!(score.version, 1, "scored once");
    let download = score
        .snapshot
        .unwrap()
        .contributions
        .into_iter()
        .find(|c| c.rule_id == "whitepaper-download")
        .unwrap();
    assert_eq!(download.points.as_f64(), 20.0);
    assert_eq!(app.items("activity").await.len(), 1);

    // Qualify sees the same LeadScored twice, and out of order with LeadCaptured.
    let scored: Vec<Value> = app.drain("QualifyQueue").await;
    assert!(
        scored.iter().any(|e| e["detail-type"] == "LeadScored"),
        "{scored:?}"
    );
    let qualify = app.stack.function("qualify").unwrap().sqs.clone().unwrap();
    for envelope in scored.iter().rev().chain(scored.iter()) {
        let e = sqs_event(&uuid::Uuid::new_v4().to_string(), envelope.to_string());
        assert!(qualify(e).await.batch_item_failures.is_empty());
    }
    let lead = store.get(lead_id).await.unwrap().unwrap();
    assert_eq!(
        lead.stage,
        Stage::Engaged,
        "fit 30 + download 20 is engaged, not MQL: {:?}",
        lead.qualification
    );
    let stage_changes = store
        .timeline(lead_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "stage_changed")
        .count();
    assert_eq!(stage_changes, 1, "one transition for four deliveries");
}

/// A new model version changes how new events score, and is recorded with the score.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_push_changes_the_scoring_of_new_events() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .unwrap();
    let lead_id = app.capture(&json!({"email": "model@example.com"})).await;
    let score_event = app
        .stack
        .function("score-event")
        .unwrap()
        .sqs
        .clone()
        .unwrap();
    let send = |id: &str| {
        let body = json!({"event_id": id, "type": "download", "occurred_at": at(1), "tags": ["case-study"], "lead_id": lead_id.to_string()});
        score_event(sqs_event(id, body.to_string()))
    };
    assert!(send("cs-1").await.batch_item_failures.is_empty());
    let store = app.store();
    let before = store.score(lead_id).await.unwrap().unwrap();
    assert_eq!(before.config_version, 1);
    assert!(!before
        .snapshot
        .unwrap()
        .contributions
        .iter()
        .any(|c| c.rule_id == "case-study-download"));

    let yaml = std::fs::read_to_string(leadflow_local::config::example_path()).unwrap().replace(
        "  behaviour:\n",
        "  behaviour:\n    - id: case-study-download\n      event_type: download\n      tags_any: [case-study]\n      points: 30\n",
    );
    let pushed = store
        .push(&yaml, Some("case studies count"), Utc::now())
        .await
        .unwrap();
    assert_eq!(pushed.version, 2);
    assert!(send("cs-2").await.batch_item_failures.is_empty());
    let after = store.score(lead_id).await.unwrap().unwrap();
    assert_eq!(after.config_version, 2);
    let case_study = after
        .snapshot
        .unwrap()
        .contributions
        .into_iter()
        .find(|c| c.rule_id == "case-study-download")
        .expect("the new rule scores");
    assert_eq!(
        case_study.points.as_f64(),
        30.0,
        "only the event after the push matched the new rule"
    );
}
