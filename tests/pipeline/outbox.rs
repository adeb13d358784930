//! Events reach the bus once, even when publishing fails after the write.

use std::sync::atomic::{AtomicUsize, Ordering};

use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_domain::ports::{EventPublisher, PublishError};
use leadflow_domain::EventEnvelope;
use outbox_relay::OutboxRelay;
use serde_json::Value;

use crate::support::TestApp;

/// The real publisher, failing its first `failures` calls (as EventBridge does when throttled
/// or unreachable).
struct FlakyPublisher {
    inner: EventBridgePublisher,
    failures: AtomicUsize,
}

impl EventPublisher for FlakyPublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(PublishError("simulated: EventBridge unreachable".into()));
        }
        self.inner.publish(events).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_publish_is_delivered_once_by_the_relay() {
    let app = TestApp::spawn().await;
    let store = || DynamoStore::new(app.dynamo.clone(), app.table());
    let publisher = || EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus"));
    let capture = capture_form::CaptureForm::new(
        store(),
        FlakyPublisher {
            inner: publisher(),
            failures: AtomicUsize::new(1),
        },
        leadflow_aws::sqs::SqsEventQueue::new(app.sqs.clone(), app.resource("ScoreEventQueue")),
        capture_form::CaptureConfig::new("", "", "_gotcha", "email").unwrap(),
    );
    let now = chrono::Utc::now();
    let request = http::Request::builder()
        .method("POST")
        .uri("/leads")
        .header("content-type", "application/json")
        .body(lambda_http::Body::from(r#"{"email":"outage@example.com"}"#))
        .unwrap();
    let response = capture.handle_at(request, now).await;
    assert_eq!(
        response.status(),
        201,
        "the lead is stored although the bus was down"
    );
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(app.items("lead").await.len(), 1);
    assert_eq!(
        app.items("outbox").await.len(),
        1,
        "the event waits in the outbox"
    );
    assert!(
        app.captured_events().await.is_empty(),
        "nothing reached the bus yet"
    );

    let relay = OutboxRelay::new(store(), publisher());
    // While the writer's claim holds, the relay leaves the event alone.
    let early = relay
        .run_at(now + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(early.published, 0);

    let due = relay
        .run_at(now + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(due.published, 1);
    let again = relay
        .run_at(now + chrono::Duration::minutes(4))
        .await
        .unwrap();
    assert_eq!(again.published, 0, "published events leave the outbox");

    let events = app.captured_events().await;
    assert_eq!(events.len(), 1, "delivered exactly once");
    // The public answer names the submission, not the lead.
    assert!(body.get("lead_id").is_none(), "{body}");
    let lead_id = app.items("lead").await[0]["id"].as_s().unwrap().clone();
    assert_eq!(events[0]["detail"]["lead_id"], lead_id.as_str());
    assert!(app.items("outbox").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_racing_publish_each_event_once() {
    let app = TestApp::spawn().await;
    let store = || DynamoStore::new(app.dynamo.clone(), app.table());
    let publisher = || EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus"));
    let capture = capture_form::CaptureForm::new(
        store(),
        FlakyPublisher {
            inner: publisher(),
            failures: AtomicUsize::new(5),
        },
        leadflow_aws::sqs::SqsEventQueue::new(app.sqs.clone(), app.resource("ScoreEventQueue")),
        capture_form::CaptureConfig::new("", "", "_gotcha", "email").unwrap(),
    );
    let now = chrono::Utc::now();
    for i in 0..5 {
        let request = http::Request::builder()
            .method("POST")
            .uri("/leads")
            .header("content-type", "application/json")
            .body(lambda_http::Body::from(format!(
                r#"{{"email":"race{i}@example.com"}}"#
            )))
            .unwrap();
        assert_eq!(capture.handle_at(request, now).await.status(), 201);
    }
    assert_eq!(app.items("outbox").await.len(), 5);
    let a = OutboxRelay::new(store(), publisher());
    let b = OutboxRelay::new(store(), publisher());
    let later = now + chrono::Duration::minutes(2);
    let (ra, rb) = tokio::join!(a.run_at(later), b.run_at(later));
    assert_eq!(ra.unwrap().published + rb.unwrap().published, 5);
    assert_eq!(app.captured_events().await.len(), 5, "each event once");
}

#[tokio::test(flavor = "multi_thread")]
async fn lead_captured_on_the_bus_reaches_the_qualify_queue_by_the_template_rule() {
    let app = TestApp::spawn().await;
    let lead_id = leadflow_domain::LeadId::new_at(chrono::Utc::now());
    let event = EventEnvelope::new(
        lead_id,
        chrono::Utc::now(),
        leadflow_domain::LeadEvent::StageChanged {
            from: leadflow_domain::Stage::Inquiry,
            to: leadflow_domain::Stage::Engaged,
            actor: leadflow_domain::Actor::System,
            reason: None,
        },
    );
    let publisher = EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus"));
    publisher
        .publish(std::slice::from_ref(&event))
        .await
        .unwrap();
    assert!(
        app.drain("QualifyQueue").await.is_empty(),
        "the rule passes only LeadCaptured and LeadScored"
    );

    // A LeadCaptured, as capture-form publishes it.
    let captured = leadflow_domain::Lead::capture(
        lead_id,
        leadflow_domain::SubmissionRules::default()
            .validate(&vec![("email".into(), "bus@example.com".into())])
            .unwrap(),
        &Default::default(),
        chrono::Utc::now(),
    );
    let event = EventEnvelope::new(
        lead_id,
        chrono::Utc::now(),
        captured.change.events[0].clone(),
    );
    publisher
        .publish(std::slice::from_ref(&event))
        .await
        .unwrap();
    let arrived = app.drain("QualifyQueue").await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0]["detail-type"], "LeadCaptured");
    assert_eq!(arrived[0]["source"], "leadflow");
    let detail: EventEnvelope =
        serde_json::from_value(arrived[0]["detail"].clone()).expect("the envelope round-trips");
    assert_eq!(detail, event);
    assert!(
        app.drain("RouteQueue").await.is_empty(),
        "other queues do not get it"
    );
}

/// An outbox item as the store wrote them before sharding: every one under `gsi1pk = OUTBOX`.
/// A table deployed before may still hold such items when the sharded relay takes over.
async fn put_unsharded_outbox_item(app: &TestApp, event: &EventEnvelope, claimed_until: &str) {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    app.dynamo
        .put_item()
        .table_name(app.table())
        .item("pk", S(format!("OUTBOX#{}", event.event_id)))
        .item("sk", S("OUTBOX".into()))
        .item("entity", S("outbox".into()))
        .item("gsi1pk", S("OUTBOX".into()))
        .item("gsi1sk", S(format!("{claimed_until}#{}", event.event_id)))
        .item("claimed_until", S(claimed_until.into()))
        .item("detail_type", S(event.detail_type().into()))
        .item("lead_id", S(event.lead_id.to_string()))
        .item("event", S(serde_json::to_string(event).unwrap()))
        .send()
        .await
        .expect("an unsharded outbox item");
}

/// Captures while the bus is down leave their events in the outbox shards of their event ids,
/// spread over more than one; the relay finds every one of them, and an item of the
/// pre-sharding layout (`gsi1pk = OUTBOX`) too.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_drains_every_outbox_shard_and_the_unsharded_partition() {
    use leadflow_domain::ports::shard_of;
    let app = TestApp::spawn().await;
    let store = || DynamoStore::new(app.dynamo.clone(), app.table());
    let publisher = || EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus"));
    let capture = capture_form::CaptureForm::new(
        store(),
        FlakyPublisher {
            inner: publisher(),
            failures: AtomicUsize::new(usize::MAX),
        },
        leadflow_aws::sqs::SqsEventQueue::new(app.sqs.clone(), app.resource("ScoreEventQueue")),
        capture_form::CaptureConfig::new("", "", "_gotcha", "email").unwrap(),
    );
    let now = chrono::Utc::now();
    const LEADS: usize = 24;
    for i in 0..LEADS {
        let request = http::Request::builder()
            .method("POST")
            .uri("/leads")
            .header("content-type", "application/json")
            .body(lambda_http::Body::from(format!(
                r#"{{"email":"shard{i}@example.com"}}"#
            )))
            .unwrap();
        assert_eq!(capture.handle_at(request, now).await.status(), 201);
    }
    let items = app.items("outbox").await;
    assert_eq!(items.len(), LEADS);
    let mut shards = std::collections::BTreeSet::new();
    for item in &items {
        let event: EventEnvelope = serde_json::from_str(crate::support::s(item, "event")).unwrap();
        let gsi1pk = crate::support::s(item, "gsi1pk");
        assert_eq!(
            gsi1pk,
            format!("OUTBOX#{:02}", shard_of(event.event_id)),
            "the event id's shard"
        );
        shards.insert(gsi1pk.to_owned());
    }
    // 24 random event ids all in one of 16 shards: a chance of about 1e-28.
    assert!(shards.len() > 1, "spread over shards: {shards:?}");

    // An event left by a writer of the release before sharding.
    let lead_id = leadflow_domain::LeadId::new_at(now);
    let old = EventEnvelope::new(
        lead_id,
        now,
        leadflow_domain::LeadEvent::LeadCaptured {
            source: Some("before-sharding".into()),
            campaign: None,
        },
    );
    put_unsharded_outbox_item(&app, &old, "2026-01-01T00:00:00.000000Z").await;

    let relay = OutboxRelay::new(store(), publisher());
    let report = relay
        .run_at(now + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(report.published, LEADS + 1, "{report:?}");
    assert!(app.items("outbox").await.is_empty(), "every shard drained");
    let events = app.captured_events().await;
    assert_eq!(events.len(), LEADS + 1);
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["event_id"] == old.event_id.to_string()),
        "the pre-sharding event was published"
    );
}

/// A backlog in one shard (an outage while one writer retried) does not hide the events of
/// the other shards: one `due` page holds all of theirs and fills up from the backlog.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_in_one_outbox_shard_does_not_starve_the_others() {
    use leadflow_domain::ports::{shard_of, LeadStore, LeadWrite, Outbox};
    let app = TestApp::spawn().await;
    let store = DynamoStore::new(app.dynamo.clone(), app.table());
    let now = chrono::Utc::now();
    let event_in = |lead: leadflow_domain::LeadId, shard: Option<u8>| loop {
        let event = EventEnvelope::new(
            lead,
            now,
            leadflow_domain::LeadEvent::LeadCaptured {
                source: None,
                campaign: None,
            },
        );
        let s = shard_of(event.event_id);
        if shard.map_or(s != 3, |want| s == want) {
            return event;
        }
    };
    // 120 events in shard 3, written by three leads' transactions of 40 events each.
    let lead = |i: usize| {
        let submission = leadflow_domain::SubmissionRules::default()
            .validate(&vec![("email".into(), format!("backlog{i}@example.com"))])
            .unwrap();
        leadflow_domain::Lead::capture(
            leadflow_domain::LeadId::new_at(now),
            submission,
            &Default::default(),
            now,
        )
        .lead
    };
    for i in 0..3 {
        let lead = lead(i);
        let events = (0..40).map(|_| event_in(lead.id, Some(3))).collect();
        store
            .write(&LeadWrite {
                lead,
                expected_version: None,
                timeline: vec![],
                events,
            })
            .await
            .unwrap();
    }
    // Six events elsewhere (any shard but 3), and one of the pre-sharding layout.
    let few = lead(3);
    let others: Vec<EventEnvelope> = (0..6).map(|_| event_in(few.id, None)).collect();
    store
        .write(&LeadWrite {
            lead: few,
            expected_version: None,
            timeline: vec![],
            events: others.clone(),
        })
        .await
        .unwrap();
    let old = event_in(lead(4).id, None);
    put_unsharded_outbox_item(&app, &old, "2026-01-01T00:00:00.000000Z").await;

    let due = store
        .due(now + chrono::Duration::minutes(2), 100)
        .await
        .unwrap();
    assert_eq!(due.len(), 100, "a full page");
    let ids: std::collections::BTreeSet<_> = due.iter().map(|e| e.event.event_id).collect();
    for e in others.iter().chain([&old]) {
        assert!(ids.contains(&e.event_id), "{} was left out", e.event_id);
    }
    let from_backlog = due
        .iter()
        .filter(|e| shard_of(e.event.event_id) == 3 && e.event.event_id != old.event_id)
        .count();
    assert_eq!(from_backlog, 100 - 7, "the backlog fills the rest");
    assert!(
        due.windows(2)
            .all(|w| w[0].claimed_until <= w[1].claimed_until),
        "oldest first"
    );
}
