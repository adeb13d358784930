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
