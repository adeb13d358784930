//! Faults that wait instead of failing fast, on the emulator: a sales-ready lead that routing
//! cannot place (no routing configuration, every owner at their cap) is parked with one
//! timeline entry and tried again by sla-tick, never dead-lettered; and every dead-letter
//! queue of the template can be replayed into its queue.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_domain::assignment::AssignedTo;
use leadflow_domain::events::{EventEnvelope, LeadEvent};
use leadflow_domain::ports::LeadStore;
use leadflow_domain::ports::RoutingWaits;
use leadflow_domain::routing::WaitReason;
use leadflow_domain::scoring::{Grade, Points, Temperature};
use leadflow_domain::{LeadId, TimelineEntry};
use leadflow_lambda::active_config::ActiveConfig;
use route::{Route, Routed};
use serde_json::{json, Value};
use sla_tick::{SlaTick, TickReport, TickSettings};

use crate::support::{example_scoring, mql, sqs_event, TestApp};

fn publisher(app: &TestApp) -> EventBridgePublisher {
    EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus"))
}

fn route_fn(app: &TestApp) -> Route<DynamoStore, EventBridgePublisher> {
    Route::new(
        app.store(),
        publisher(app),
        ActiveConfig::new(app.store(), std::time::Duration::ZERO),
    )
}

/// One sla-tick at `now`, as the schedule fires it.
async fn tick(app: &TestApp, now: DateTime<Utc>) -> TickReport {
    SlaTick::new(
        app.store(),
        publisher(app),
        ActiveConfig::new(app.store(), std::time::Duration::ZERO),
        TickSettings::DEFAULT,
    )
    .run_at(now)
    .await
    .expect("the tick runs")
}

/// `LeadQualified` for `lead` as the route queue receives it from EventBridge.
fn qualified_message(lead: LeadId, now: DateTime<Utc>) -> String {
    let envelope = EventEnvelope::new(
        lead,
        now,
        LeadEvent::LeadQualified {
            score: Points::from_cents(7000),
            grade: Grade::B,
            temperature: Temperature::Warm,
            product: None,
            config_version: 1,
            reason: "test".into(),
        },
    );
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "LeadQualified", "source": "leadflow",
        "account": "000000000000", "time": now, "region": "us-east-1",
        "resources": [], "detail": envelope,
    })
    .to_string()
}

async fn timeline(app: &TestApp, lead: LeadId, action: &str) -> Vec<TimelineEntry> {
    app.store()
        .timeline(lead)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

/// Messages waiting on a queue (approximate count, as SQS reports it).
async fn waiting(app: &TestApp, queue: &str) -> i64 {
    let out = app
        .sqs
        .get_queue_attributes()
        .queue_url(app.resource(queue))
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes");
    out.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

const ONE_OWNER_WITH_A_CAP: &str = r#"routing:
  default_pool: team
  owners:
    - { id: anna, name: Anna, email: anna@example.com, daily_cap: 1 }
  pools:
    - { id: team, members: [anna] }
"#;

/// Routing without a routing section: the route function answers the message (no failure,
/// however often it is delivered, so no DLQ), the lead is parked with one timeline entry,
/// and once a routing configuration is pushed, the next due tick routes it.
#[tokio::test(flavor = "multi_thread")]
async fn routing_without_a_config_waits_and_is_routed_once_one_is_pushed() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    app.push_config(&example_scoring()).await;
    let now = Utc::now();
    let lead = mql(&app, "wait@example.com", &[], Grade::B, Temperature::Warm).await;

    // The function as its event source mapping invokes it: six deliveries of the message
    // (more than maxReceiveCount, 5) all succeed, so nothing goes back to the queue.
    let route = app.stack.function("route").expect("route");
    let handler = route.sqs.as_ref().expect("an SQS function");
    for n in 0..6 {
        let response = handler(sqs_event(&format!("m{n}"), qualified_message(lead, now))).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "delivery {n} failed: the message would reach RouteDLQ"
        );
    }
    assert_eq!(waiting(&app, "RouteDLQ").await, 0);
    let told = timeline(&app, lead, "routing_waits").await;
    assert_eq!(told.len(), 1, "once per wait, not per try: {told:?}");
    let reason = told[0].reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("routing waits: no routing configuration is active; next try at "),
        "{reason}"
    );
    let wait = app
        .store()
        .routing_wait(lead)
        .await
        .unwrap()
        .expect("parked");
    assert_eq!(wait.reason, WaitReason::NoRoutingConfig);
    // The handler takes the time of its invocation.
    assert!(wait.until > now && wait.until <= Utc::now() + Duration::minutes(5));
    let parked = app.store().get(lead).await.unwrap().unwrap();
    assert!(parked.awaits_routing(), "still an MQL without assignment");

    // Still no routing at the next try: parked again, untold.
    let report = tick(&app, wait.until).await;
    assert_eq!((report.routed, report.still_waiting), (0, 1), "{report:?}");
    assert_eq!(timeline(&app, lead, "routing_waits").await.len(), 1);
    let wait = app.store().routing_wait(lead).await.unwrap().unwrap();
    assert_eq!(wait.tries, 7, "six deliveries and a tick, one wait");

    // The operator pushes routing; the next due try routes the lead and ends the wait.
    app.push_config(&format!("{}\n{ONE_OWNER_WITH_A_CAP}", example_scoring()))
        .await;
    let report = tick(&app, wait.until).await;
    assert_eq!((report.routed, report.still_waiting), (1, 0), "{report:?}");
    let routed = app.store().get(lead).await.unwrap().unwrap();
    assert!(
        matches!(routed.assignment.as_ref().unwrap().assigned_to, AssignedTo::Owner { ref id, .. } if id == "anna"),
        "{:?}",
        routed.assignment
    );
    assert_eq!(timeline(&app, lead, "routed").await.len(), 1);
    assert!(app.store().routing_wait(lead).await.unwrap().is_none());
    let report = tick(&app, wait.until + Duration::hours(1)).await;
    assert_eq!(
        (report.routed, report.still_waiting),
        (0, 0),
        "nothing left: {report:?}"
    );
    // LeadRouted went out for the CRM handover.
    let routed_events: Vec<Value> = app
        .drain("CrmWebhookQueue")
        .await
        .into_iter()
        .filter(|e| e["detail-type"] == "LeadRouted")
        .collect();
    assert_eq!(routed_events.len(), 1);
}

/// The daily count of `owner` on `day` (its cap counter).
async fn taken(app: &TestApp, owner: &str, day: chrono::NaiveDate) -> i64 {
    let item = app
        .dynamo
        .get_item()
        .table_name(app.table())
        .key("pk", AttributeValue::S(format!("ROUTING#owner#{owner}")))
        .key("sk", AttributeValue::S(format!("DAY#{day}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    item.item()
        .and_then(|i| i.get("assigned"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

/// The only owner is at their cap and the pool has no manager: the lead waits (one entry),
/// the tries during the day take no slot, and the next day it is routed.
#[tokio::test(flavor = "multi_thread")]
async fn everybody_at_cap_waits_and_is_routed_the_next_day() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    app.push_config(&format!("{}\n{ONE_OWNER_WITH_A_CAP}", example_scoring()))
        .await;
    let route = route_fn(&app);
    let now = Utc::now();
    let today = now.date_naive();
    let first = mql(&app, "first@example.com", &[], Grade::B, Temperature::Warm).await;
    assert_eq!(route.route(first, now).await.unwrap(), Routed::Assigned);
    let second = mql(&app, "second@example.com", &[], Grade::B, Temperature::Warm).await;
    let Routed::Waits(wait) = route.route(second, now).await.expect("no error") else {
        panic!("anna is at her cap: the lead waits")
    };
    assert_eq!(
        wait.reason,
        WaitReason::NobodyAvailable {
            pool: "team".into()
        }
    );
    let midnight = (today + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(wait.until, midnight.min(now + Duration::hours(1)));
    // A redelivered LeadQualified: still one entry.
    assert!(matches!(
        route.route(second, now).await.unwrap(),
        Routed::Waits(_)
    ));
    let told = timeline(&app, second, "routing_waits").await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0]
        .reason
        .as_deref()
        .unwrap_or_default()
        .starts_with("routing waits: no owner in pool team has capacity today; next try at "));
    assert_eq!(
        taken(&app, "anna", today).await,
        1,
        "no slot taken by the waits"
    );

    // Tried again later the same day: still full, parked again.
    let later = wait.until;
    if later.date_naive() == today {
        let report = tick(&app, later).await;
        assert_eq!((report.routed, report.still_waiting), (0, 1), "{report:?}");
        assert_eq!(timeline(&app, second, "routing_waits").await.len(), 1);
    }
    // The next day anna has room again.
    let tomorrow = midnight + Duration::hours(9);
    let report = tick(&app, tomorrow).await;
    assert_eq!((report.routed, report.still_waiting), (1, 0), "{report:?}");
    let lead = app.store().get(second).await.unwrap().unwrap();
    let a = lead.assignment.expect("routed the next day");
    assert!(matches!(a.assigned_to, AssignedTo::Owner { ref id, .. } if id == "anna"));
    assert_eq!(a.at, tomorrow);
    assert_eq!(taken(&app, "anna", today).await, 1);
    assert_eq!(taken(&app, "anna", tomorrow.date_naive()).await, 1);
    assert!(app.store().routing_wait(second).await.unwrap().is_none());
}

/// Every queue with a dead-letter queue in template.yaml: a message parked there is moved back
/// to its queue, once, and the DLQ is empty afterwards. The route queue's is then handled by
/// route (idempotently: the lead is routed once).
#[tokio::test(flavor = "multi_thread")]
async fn every_dead_letter_queue_replays_into_its_queue() {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    let template = std::fs::read_to_string(leadflow_local::workspace_root().join("template.yaml"))
        .expect("template.yaml");
    let template: serde_norway::Value = serde_norway::from_str(&template).unwrap();
    let mut pairs = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().unwrap() {
        let target = &resource["Properties"]["RedrivePolicy"]["deadLetterTargetArn"];
        if let serde_norway::Value::Tagged(t) = target {
            let dlq = t
                .value
                .as_str()
                .unwrap()
                .trim_end_matches(".Arn")
                .to_owned();
            pairs.push((id.as_str().unwrap().to_owned(), dlq));
        }
    }
    assert_eq!(pairs.len(), 4, "{pairs:?}");

    app.push_config(&format!("{}\n{ONE_OWNER_WITH_A_CAP}", example_scoring()))
        .await;
    let now = Utc::now();
    let lead = mql(&app, "dlq@example.com", &[], Grade::B, Temperature::Warm).await;
    for (queue, dlq) in &pairs {
        let body = qualified_message(lead, now);
        for _ in 0..2 {
            app.sqs
                .send_message()
                .queue_url(app.resource(dlq))
                .message_body(&body)
                .send()
                .await
                .unwrap();
        }
        let report =
            leadflow_aws::sqs::redrive(&app.sqs, app.resource(dlq), app.resource(queue), None)
                .await
                .unwrap_or_else(|e| panic!("{dlq}: {e:?}"));
        assert_eq!(
            (report.moved, report.returned),
            (1, 1),
            "{dlq}: the duplicate stays for a later replay: {report:?}"
        );
        // Only the replayed message (the CRM queue also holds the LeadRouted of the replay
        // into the route queue before it).
        let moved: Vec<Value> = app
            .drain(queue)
            .await
            .into_iter()
            .filter(|m| m["detail-type"] == "LeadQualified")
            .collect();
        assert_eq!(moved.len(), 1, "{queue}: {moved:?}");
        assert_eq!(moved[0]["detail"]["lead_id"], lead.to_string());
        if queue == "RouteQueue" {
            // Replayed twice over: routed once.
            let route = app.stack.function("route").unwrap();
            let handler = route.sqs.as_ref().unwrap();
            for n in 0..2 {
                let r = handler(sqs_event(&format!("r{n}"), moved[0].to_string())).await;
                assert!(r.batch_item_failures.is_empty());
            }
            assert_eq!(timeline(&app, lead, "routed").await.len(), 1);
        }
    }
}
