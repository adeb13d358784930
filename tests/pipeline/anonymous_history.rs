//! Anonymous history on the emulator: bounded per key (count and age), joined in pages within
//! the function's timeout, and a batch in which one bad record fails only itself.

use std::time::{Duration as StdDuration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use leadflow_domain::anonymous::MAX_EVENTS;
use leadflow_domain::config::LeadflowConfig;
use leadflow_domain::lead_score::RECENT_ACTIVITIES;
use leadflow_domain::ports::{ConfigStore, LeadStore, ScoreStore};
use leadflow_domain::scoring::{ScoreState, ScoringModel};
use leadflow_domain::{LeadId, TrackedEvent};
use serde_json::{json, Value};

use crate::support::TestApp;

/// The functions' timeout (template.yaml, Globals): a batch that takes longer fails whole.
const FUNCTION_TIMEOUT: StdDuration = StdDuration::from_secs(10);

/// The `i`-th event of a visitor, at `at`: a mix that counts for several rules and tags.
fn event(visitor: &str, i: usize, at: DateTime<Utc>) -> TrackedEvent {
    let (kind, url, tags): (&str, &str, Vec<&str>) = match i % 4 {
        0 => ("page_view", "https://www.example.com/pricing", vec!["crm"]),
        1 => (
            "page_view",
            "https://www.example.com/blog/a",
            vec!["analytics"],
        ),
        2 => (
            "download",
            "https://www.example.com/paper.pdf",
            vec!["whitepaper"],
        ),
        _ => ("email_opened", "https://www.example.com/news", vec!["news"]),
    };
    serde_json::from_value(json!({
        "event_id": format!("{visitor}-{i}"), "type": kind, "occurred_at": at.to_rfc3339(),
        "url": url, "tags": tags, "visitor_id": visitor,
    }))
    .expect("a tracked event")
}

/// Parks `events` under `key` through the adapter, in order.
async fn park_all(app: &TestApp, key: &str, events: &[TrackedEvent]) {
    park_concurrently(app, key, events, 1).await;
}

/// Parks `events` under `key` through the adapter, `n` at a time. (moto's `ADD` is not atomic
/// under concurrent calls, as DynamoDB's is, so concurrent parks there may share a slot.)
async fn park_concurrently(app: &TestApp, key: &str, events: &[TrackedEvent], n: usize) {
    let store = app.store();
    futures::stream::iter(events)
        .map(|e| store.park_anonymous(key, e))
        .buffered(n)
        .try_collect::<Vec<()>>()
        .await
        .expect("parked");
}

async fn model(app: &TestApp) -> ScoringModel {
    let active = app
        .store()
        .active()
        .await
        .unwrap()
        .expect("a configuration");
    LeadflowConfig::parse(&active.yaml).unwrap().scoring
}

/// The index `i` of an event made by [`event`].
fn index(e: &TrackedEvent) -> usize {
    e.event_id.rsplit('-').next().unwrap().parse().unwrap()
}

fn batch(records: Vec<(&str, String)>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records
        .into_iter()
        .map(|(id, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(id.to_owned());
            m.body = Some(body);
            m
        })
        .collect();
    event
}

/// Issue 11: 10,000 events parked under one visitor id. The key keeps the newest 500, and the
/// join runs in batches that each end within the function's timeout (continuing in new
/// messages), none failing; the lead's score is exactly what the kept events give.
#[tokio::test(flavor = "multi_thread")]
async fn a_10000_event_history_is_bounded_and_joined_within_the_timeout() {
    let app = TestApp::spawn().await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .expect("config/leadflow.yaml is pushed");
    let store = app.store();
    let key = "visitor:v-heavy";
    let now = Utc::now();
    let total = 10_000;
    let step = Duration::days(80) / total as i32;
    let events: Vec<TrackedEvent> = (0..total)
        .map(|i| event("v-heavy", i, now - Duration::days(80) + step * i as i32))
        .collect();
    // Fast for the bulk, in order for the last thousand (which decide what is kept).
    park_concurrently(&app, key, &events[..total - 1000], 16).await;
    park_all(&app, key, &events[total - 1000..]).await;

    // Bounded: the oldest parked made room, the newest remain.
    let kept = store.anonymous_events(key).await.unwrap();
    assert_eq!(kept.len() as u64, MAX_EVENTS, "at most MAX_EVENTS per key");
    let mut kept_indexes: Vec<usize> = kept.iter().map(index).collect();
    kept_indexes.sort();
    assert_eq!(
        kept_indexes,
        (total - MAX_EVENTS as usize..total).collect::<Vec<_>>(),
        "the newest events are kept"
    );
    let stored = app
        .dynamo
        .query()
        .table_name(app.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("ANON#{key}")))
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .unwrap();
    assert!(
        stored.count() as u64 <= MAX_EVENTS + 1,
        "the events and the counter, nothing more: {}",
        stored.count()
    );

    let lead_id = app
        .capture(
            &json!({"email": "heavy@example.com", "first_name": "Hanna", "company": "Heavy AG",
            "visitor_id": "v-heavy"}),
        )
        .await;
    let poller = app
        .stack
        .pollers()
        .into_iter()
        .find(|p| p.source.queue_logical_id == "ScoreEventQueue")
        .expect("score-event polls its queue");
    let started = Instant::now();
    let (mut idle, mut batches) = (0, 0);
    while idle < 2 {
        assert!(
            started.elapsed() < StdDuration::from_secs(300),
            "the join finished"
        );
        let outcome = tokio::time::timeout(
            FUNCTION_TIMEOUT,
            poller.poll_once(StdDuration::from_secs(1)),
        )
        .await
        .expect("every batch ends within the function's timeout")
        .expect("poll");
        assert_eq!(outcome.failed, 0, "no record of the join failed");
        if outcome.received == 0 {
            idle += 1;
        } else {
            idle = 0;
            batches += 1;
        }
    }
    assert!(batches >= 1);

    let model = model(&app).await;
    let score = store
        .score(lead_id)
        .await
        .unwrap()
        .expect("the lead is scored");
    let behaviour: Vec<_> = kept.iter().map(TrackedEvent::behaviour).collect();
    let expected = ScoreState::rescore(&model, &behaviour);
    assert_eq!(score.state.kept_events(), expected.kept_events());
    let lead = store.get(lead_id).await.unwrap().unwrap();
    let at = Utc::now();
    let got = score.state.snapshot(&model, &lead.fit_profile(), at);
    let want = expected.snapshot(&model, &lead.fit_profile(), at);
    assert!(
        (got.score.cents() - want.score.cents()).abs() <= 1,
        "the score is what the kept events give: {:?} vs {:?}",
        got.score,
        want.score
    );
    assert!(
        want.behaviour.cents() > 0,
        "the kept events count for something"
    );
    // The record lists the latest activities by occurrence, each once.
    let activities = store.recent_activities(lead_id, 1000).await.unwrap();
    let mut newest: Vec<&TrackedEvent> = kept.iter().collect();
    newest.sort_by(|a, b| (b.occurred_at, &b.event_id).cmp(&(a.occurred_at, &a.event_id)));
    let listed: Vec<&str> = activities
        .iter()
        .map(|a| a.event.event_id.as_str())
        .collect();
    let want: Vec<&str> = newest
        .iter()
        .take(RECENT_ACTIVITIES)
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(listed, want, "the latest kept events, each once");
}

/// Issue 11: a batch of six records, three of them bad (not JSON, not a tracked event, the
/// continuation of an unknown lead's join): only those three fail. A history with a damaged
/// item and an expired one is still joined (the good events), a long history's join ends in
/// time, and an anonymous event is parked.
#[tokio::test(flavor = "multi_thread")]
async fn one_bad_record_in_a_batch_fails_only_itself() {
    let app = TestApp::spawn().await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .expect("config/leadflow.yaml is pushed");
    let store = app.store();
    let now = Utc::now();

    // A history with three good events, one older than the maximum age (the TTL may not have
    // removed it yet) and one damaged item.
    let good: Vec<TrackedEvent> = (0..3)
        .map(|i| event("v-damaged", i, now - Duration::hours(3 - i as i64)))
        .collect();
    park_all(&app, "visitor:v-damaged", &good).await;
    park_all(
        &app,
        "visitor:v-damaged",
        &[event("v-damaged", 3, now - Duration::days(91))],
    )
    .await;
    app.dynamo
        .put_item()
        .table_name(app.table())
        .item("pk", AttributeValue::S("ANON#visitor:v-damaged".into()))
        .item("sk", AttributeValue::S(format!("EV#{:04}", MAX_EVENTS - 1)))
        .item("entity", AttributeValue::S("anonymous_event".into()))
        .item("event", AttributeValue::S("{\"event_id\": ".into()))
        .send()
        .await
        .unwrap();
    // A full history.
    let long: Vec<TrackedEvent> = (0..MAX_EVENTS as usize)
        .map(|i| event("v-long", i, now - Duration::minutes(600 - i as i64)))
        .collect();
    park_all(&app, "visitor:v-long", &long).await;

    let damaged = app
        .capture(&json!({"email": "damaged@example.com", "first_name": "Dora", "visitor_id": "v-damaged"}))
        .await;
    let long_lead = app
        .capture(
            &json!({"email": "long@example.com", "first_name": "Lena", "visitor_id": "v-long"}),
        )
        .await;
    let queued = app.drain("ScoreEventQueue").await;
    let captured = |lead: LeadId| -> String {
        queued
            .iter()
            .find(|m| {
                m["detail-type"] == "LeadCaptured" && m["detail"]["lead_id"] == lead.to_string()
            })
            .unwrap_or_else(|| panic!("LeadCaptured of {lead} queued: {queued:?}"))
            .to_string()
    };
    let anonymous = serde_json::to_string(&event("v-new", 0, now)).unwrap();
    let malformed: Value = json!({"event_id": 12345, "type": "page_view", "visitor_id": "v-x"});
    let response = tokio::time::timeout(
        FUNCTION_TIMEOUT,
        (app.stack
            .function("score-event")
            .unwrap()
            .sqs
            .clone()
            .unwrap())(batch(vec![
            ("not-json", "{\"event_id\": \"e".into()),
            ("malformed", malformed.to_string()),
            (
                "unknown-lead",
                json!({"continue_join": LeadId::new_at(now).to_string()}).to_string(),
            ),
            ("join-damaged", captured(damaged)),
            ("join-long", captured(long_lead)),
            ("anonymous", anonymous),
        ])),
    )
    .await
    .expect("the batch ends within the function's timeout");
    let mut failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    failed.sort();
    assert_eq!(failed, ["malformed", "not-json", "unknown-lead"]);

    // The damaged history's good events were joined, the expired one was not.
    let activities = store.recent_activities(damaged, 10).await.unwrap();
    let mut ids: Vec<_> = activities
        .iter()
        .map(|a| a.event.event_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["v-damaged-0", "v-damaged-1", "v-damaged-2"]);
    assert_eq!(
        store.anonymous_events("visitor:v-new").await.unwrap().len(),
        1,
        "the anonymous event is parked"
    );
    // The long join either finished or left its continuation on the queue (every event of
    // the history has tags, so the state keeps each one it applied).
    let scored = store
        .score(long_lead)
        .await
        .unwrap()
        .map_or(0, |s| s.state.kept_events()) as u64;
    if scored < MAX_EVENTS {
        let continued = app.drain("ScoreEventQueue").await;
        assert!(
            continued
                .iter()
                .any(|m| m["continue_join"] == long_lead.to_string()),
            "{scored} of {MAX_EVENTS} joined, and no continuation: {continued:?}"
        );
    }
}

/// A join cut off in the middle (the invocation dropped, as a timeout would) resumes from its
/// saved progress on the next delivery; with a budget far shorter than the join it goes on in
/// continuation messages, and every event is scored exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_join_resumes_where_it_stopped_and_scores_each_event_once() {
    use leadflow_lambda::run::SqsFunction;

    let app = TestApp::spawn().await;
    leadflow_local::config::ensure_active(&app.stack)
        .await
        .expect("config/leadflow.yaml is pushed");
    let store = app.store();
    let now = Utc::now();
    let total = 200;
    let events: Vec<TrackedEvent> = (0..total)
        .map(|i| event("v-resume", i, now - Duration::minutes(300 - i as i64)))
        .collect();
    park_all(&app, "visitor:v-resume", &events).await;
    let lead_id = app
        .capture(
            &json!({"email": "resume@example.com", "first_name": "Rosa", "visitor_id": "v-resume"}),
        )
        .await;
    let captured = app
        .drain("ScoreEventQueue")
        .await
        .into_iter()
        .find(|m| m["detail-type"] == "LeadCaptured")
        .expect("LeadCaptured reached score-event's queue")
        .to_string();

    let spec = &app.stack.function("score-event").unwrap().spec;
    let function = score_event::ScoreEvent::from_env(
        &leadflow_aws::Clients::new(app.stack.sdk.clone()),
        &leadflow_lambda::config::Env::from_map(spec.environment.clone()),
    )
    .expect("score-event builds from its template environment");

    // Cut off mid-join, once a page's progress is saved (as a timeout would cut it).
    {
        let handling = function.handle(batch(vec![("captured", captured.clone())]));
        tokio::pin!(handling);
        let progressed = async {
            while store
                .join_cursor("visitor:v-resume")
                .await
                .unwrap()
                .is_none()
            {
                tokio::time::sleep(StdDuration::from_millis(20)).await;
            }
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        };
        tokio::select! {
            _ = &mut handling => panic!("the join ended before it was cut off"),
            _ = progressed => {}
        }
    }
    let cursor = store.join_cursor("visitor:v-resume").await.unwrap();
    let before = store
        .score(lead_id)
        .await
        .unwrap()
        .map_or(0, |s| s.recent.len());
    assert!(
        cursor.is_some() && before > 0 && before < total,
        "progress saved part way: {cursor:?}, {before} scored"
    );

    // Redelivered, with a budget far shorter than the rest of the join: it goes on from the
    // cursor and continues in messages of its own.
    let function = function.with_join_budget(StdDuration::from_millis(300));
    let mut next = vec![("captured", captured)];
    let mut continuations = 0;
    while !next.is_empty() {
        let response = function
            .handle(batch(next.iter().map(|(id, b)| (*id, b.clone())).collect()))
            .await;
        assert!(response.batch_item_failures.is_empty());
        next = app
            .drain("ScoreEventQueue")
            .await
            .into_iter()
            .map(|m| {
                assert_eq!(m, json!({"continue_join": lead_id.to_string()}));
                ("continuation", m.to_string())
            })
            .collect();
        continuations += next.len();
        assert!(continuations < total, "the join makes progress");
    }
    assert!(continuations >= 1, "the short budget needed continuations");

    let score = store.score(lead_id).await.unwrap().unwrap();
    // Each applied event's id is recorded once, with the write that applied it.
    assert_eq!(score.recent.len(), total, "every event joined, none twice");
    assert!(events.iter().all(|e| score.recent.contains(&e.event_id)));
    assert!(
        score.version < total as u64,
        "a page per write, not an event: {} writes",
        score.version
    );
    let model = model(&app).await;
    let behaviour: Vec<_> = events.iter().map(TrackedEvent::behaviour).collect();
    assert_eq!(
        score.state,
        ScoreState::rescore(&model, &behaviour),
        "the state is what the events give, each once"
    );
}
