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

/// An event delivered twice scores once, and qualifies once.
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
    assert_eq!(
        store.recent_activities(lead_id, 100).await.unwrap().len(),
        1
    );

    // score-event qualified the lead after scoring, in the same invocation; a third delivery
    // of the event qualifies again, and qualify sees LeadCaptured twice, after all that: each
    // changes nothing.
    assert!(score_event(event()).await.batch_item_failures.is_empty());
    let captured: Vec<Value> = app.drain("QualifyQueue").await;
    assert!(
        captured.iter().all(|e| e["detail-type"] == "LeadCaptured") && !captured.is_empty(),
        "only captures reach qualify's queue: {captured:?}"
    );
    let qualify = app.stack.function("qualify").unwrap().sqs.clone().unwrap();
    for envelope in captured.iter().chain(captured.iter()) {
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

/// SQS messages of one batch, as the event source mapping hands them over.
fn messages(bodies: &[&Value]) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    for body in bodies {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(uuid::Uuid::new_v4().to_string());
        m.body = Some(body.to_string());
        event.records.push(m);
    }
    event
}

/// A lead's events in one batch are scored with one write; an event repeated in the batch, the
/// batch delivered again, and the same event in two batches that race are each scored once.
#[tokio::test(flavor = "multi_thread")]
async fn a_lead_s_batch_is_one_write_and_no_delivery_scores_an_event_twice() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=3600"]).await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .unwrap();
    let lead_id = app.capture(&json!({"email": "batch@example.com", "company": "ACME", "industry": "software", "country": "AT"})).await;
    let score_event = app
        .stack
        .function("score-event")
        .unwrap()
        .sqs
        .clone()
        .unwrap();
    let event = |id: &str, minutes_ago: i64| {
        json!({"event_id": id, "type": "page_view", "occurred_at": at(minutes_ago),
               "url": "https://www.example.com/blog", "lead_id": lead_id.to_string()})
    };
    let (e1, e2, e3, e4, e5) = (
        event("b-1", 10),
        event("b-2", 9),
        event("b-3", 8),
        event("b-4", 7),
        event("b-5", 6),
    );
    let store = app.store();
    // Warm the configuration cache, so that the batch's requests are its own.
    assert!(score_event(messages(&[&e1]))
        .await
        .batch_item_failures
        .is_empty());
    let first = store.score(lead_id).await.unwrap().unwrap();

    // e1 again and e2 twice in one batch: one write.
    let before = app.stack.requests.snapshot();
    assert!(score_event(messages(&[&e2, &e1, &e2]))
        .await
        .batch_item_failures
        .is_empty());
    let batch = app.stack.requests.snapshot().since(&before);
    assert_eq!(batch.dynamodb_item_writes(), 1, "{batch}");
    let score = store.score(lead_id).await.unwrap().unwrap();
    assert_eq!(score.version, first.version + 1);

    // The same batch delivered again: the score is not written. A redelivery runs the
    // qualification that follows scoring (its first delivery may have stopped before it), which
    // here catches up on the lead's standing once; delivered a third time, nothing is written.
    assert!(score_event(messages(&[&e2, &e1, &e2]))
        .await
        .batch_item_failures
        .is_empty());
    assert_eq!(
        store.score(lead_id).await.unwrap().unwrap().version,
        score.version
    );
    let before = app.stack.requests.snapshot();
    assert!(score_event(messages(&[&e2, &e1, &e2]))
        .await
        .batch_item_failures
        .is_empty());
    let again = app.stack.requests.snapshot().since(&before);
    assert_eq!(again.dynamodb_item_writes(), 0, "{again}");
    assert_eq!(
        store.score(lead_id).await.unwrap().unwrap().version,
        score.version
    );

    // Two batches at once, both carrying e4: the loser of a race reads the winner's record
    // and scores only what it has not applied. (Whether they interleave here depends on
    // timing; the next test makes the race happen.)
    let (a, b) = tokio::join!(
        score_event(messages(&[&e3, &e4])),
        score_event(messages(&[&e4, &e5]))
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    let score = store.score(lead_id).await.unwrap().unwrap();
    let ids = ["b-1", "b-2", "b-3", "b-4", "b-5"];
    assert_eq!(score.recent.len(), ids.len(), "each event applied once");
    assert!(ids.iter().all(|id| score.recent.contains(id)));
    let mut listed: Vec<String> = store
        .recent_activities(lead_id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.event.event_id)
        .collect();
    listed.sort();
    assert_eq!(listed, ids, "one activity per event");
    let model = leadflow_domain::config::LeadflowConfig::parse(
        &store.active().await.unwrap().unwrap().yaml,
    )
    .unwrap()
    .scoring;
    let behaviour: Vec<_> = [&e1, &e2, &e3, &e4, &e5]
        .iter()
        .map(|e| {
            serde_json::from_value::<leadflow_domain::TrackedEvent>((*e).clone())
                .unwrap()
                .behaviour()
        })
        .collect();
    assert_eq!(
        score.state,
        leadflow_domain::scoring::ScoreState::rescore(&model, &behaviour),
        "the state is what the five events give, each once"
    );
}

/// Segment members are spread over shards; paging through a segment lists every member once,
/// in lead id order, whatever the page size.
#[tokio::test(flavor = "multi_thread")]
async fn a_segment_pages_through_its_shards_without_losing_or_repeating_leads() {
    use leadflow_domain::lead_score::LeadScore;
    use leadflow_domain::ports::{segment_shard, ScoreWrite};

    let app = TestApp::spawn().await;
    let store = app.store();
    let now = Utc::now();
    let mut leads: Vec<leadflow_domain::LeadId> = (0..40)
        .map(|i| leadflow_domain::LeadId::new_at(now - Duration::seconds(i)))
        .collect();
    for (i, lead) in leads.iter().enumerate() {
        store
            .write_score(&ScoreWrite {
                score: LeadScore::new(*lead, now),
                expected_version: None,
                members: vec![("sharded".into(), 1.0 + i as f64)],
                events: Vec::new(),
            })
            .await
            .unwrap();
    }
    let shards: std::collections::BTreeSet<u8> = leads.iter().map(|l| segment_shard(*l)).collect();
    assert!(shards.len() > 4, "the leads spread over shards: {shards:?}");
    leads.sort();
    for limit in [1, 7, 40, 100] {
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..=leads.len() {
            let (page, next) = store
                .segment_page("sharded", cursor.as_deref(), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit);
            listed.extend(page.into_iter().map(|m| m.lead_id));
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "the pages end (limit {limit})");
        assert_eq!(
            listed, leads,
            "every lead once, in id order (limit {limit})"
        );
    }
}

/// Two batches of one lead read the same score and both want to write: the store refuses the
/// second (its version is stale, by `PutItem` and by transaction alike), and scored again on
/// the winner's record it applies only the event the winner did not.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_that_lost_a_race_is_refused_and_scored_again_on_the_winner() {
    use leadflow_domain::lead_score::LeadScore;
    use leadflow_domain::ports::{ScoreWrite, StoreError};
    use leadflow_domain::scoring::{FitProfile, ScoringModel};

    let app = TestApp::spawn().await;
    let store = app.store();
    let now = Utc::now();
    let lead = leadflow_domain::LeadId::new_at(now);
    let model = ScoringModel::example();
    let fit = FitProfile::default();
    let event = |id: &str, minutes_ago: i64, tags: Value| {
        serde_json::from_value::<leadflow_domain::TrackedEvent>(json!({
            "event_id": id, "type": "page_view", "occurred_at": at(minutes_ago),
            "url": "https://www.example.com/products/crm", "tags": tags,
            "lead_id": lead.to_string()}))
        .unwrap()
    };
    let (e3, e4, e5) = (
        event("r-3", 8, json!(["crm"])),
        event("r-4", 7, json!(["crm"])),
        event("r-5", 6, json!([])),
    );
    let write = |score: LeadScore, expected_version, members| ScoreWrite {
        score,
        expected_version,
        members,
        events: Vec::new(),
    };

    // Both read no score yet; the first write creates it (with its segment member: a
    // transaction), the second is refused.
    let mut a = LeadScore::new(lead, now);
    let scored_a = a.score_batch(&model, &fit, 1, [&e3, &e4], now);
    let mut b = LeadScore::new(lead, now);
    let scored_b = b.score_batch(&model, &fit, 1, [&e4, &e5], now);
    assert!(!scored_a.members.is_empty() && !scored_b.members.is_empty());
    store
        .write_score(&write(a, None, scored_a.members))
        .await
        .unwrap();
    let lost = store
        .write_score(&write(b.clone(), None, scored_b.members.clone()))
        .await;
    assert!(
        matches!(lost, Err(StoreError::VersionConflict { .. })),
        "{lost:?}"
    );

    // Scored again on the winner's record: e4 is recognised, e5 applied.
    let mut again = store.score(lead).await.unwrap().unwrap();
    let version = again.version;
    let stale = again.clone();
    let scored = again.score_batch(&model, &fit, 1, [&e4, &e5], now);
    assert_eq!((scored.applied, scored.duplicates), (1, 1));
    assert!(scored.members.is_empty(), "e5 has no tag");
    store
        .write_score(&write(again, Some(version), Vec::new()))
        .await
        .unwrap();
    // A writer still holding the older version is refused, by PutItem and by transaction.
    for members in [Vec::new(), vec![("crm".to_owned(), 9.0)]] {
        let refused = store
            .write_score(&write(stale.clone(), Some(version), members))
            .await;
        assert!(
            matches!(refused, Err(StoreError::VersionConflict { .. })),
            "{refused:?}"
        );
    }
    let score = store.score(lead).await.unwrap().unwrap();
    assert_eq!(score.version, version + 1);
    assert_eq!(score.recent.len(), 3, "each event applied once");
    assert!(["r-3", "r-4", "r-5"]
        .iter()
        .all(|id| score.recent.contains(id)));
    assert_eq!(
        score.state,
        leadflow_domain::scoring::ScoreState::rescore(
            &model,
            &[e3.behaviour(), e4.behaviour(), e5.behaviour()]
        )
    );
}
