//! The local stack behaves like the AWS wiring it stands in for.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use leadflow_local::functions::SqsHandler;
use leadflow_local::poller::Poller;

use crate::support::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn the_template_is_provisioned_with_every_function_and_trigger() {
    let app = TestApp::spawn().await;
    let m = &app.stack.manifest;
    let binaries: BTreeSet<&str> = m.functions.values().map(|f| f.binary.as_str()).collect();
    assert_eq!(
        binaries,
        BTreeSet::from([
            "capture-form",
            "crm-callback",
            "crm-webhook",
            "lead-api",
            "outbox-relay",
            "qualify",
            "route",
            "score-event",
            "sla-tick"
        ])
    );
    for binary in ["score-event", "qualify", "route", "crm-webhook"] {
        let (_, f) = m.function_by_binary(binary).unwrap();
        assert_eq!(f.queues.len(), 1, "{binary} is fed by one queue");
        assert!(
            f.queues[0].report_batch_item_failures,
            "{binary} reports batch item failures"
        );
        assert!(f.queues[0].batch_size >= 1);
        assert!(f.environment.contains_key("TABLE_NAME"));
    }
    let schedules: Vec<_> = app
        .stack
        .schedules()
        .into_iter()
        .map(|s| (s.function, s.every.is_some()))
        .collect();
    assert!(
        schedules.contains(&("SlaTickFunction".into(), true)),
        "{schedules:?}"
    );
    assert!(
        schedules.contains(&("OutboxRelayFunction".into(), true)),
        "{schedules:?}"
    );
    for q in [
        "QualifyQueue",
        "ScoreEventQueue",
        "RouteQueue",
        "CrmWebhookQueue",
    ] {
        let attrs = app
            .sqs
            .get_queue_attributes()
            .queue_url(app.resource(q))
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap();
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
            .cloned();
        assert!(
            policy.is_some_and(|p| p.contains("maxReceiveCount")),
            "{q} has a DLQ"
        );
    }
}

/// A poller acts like an event source mapping: successes are deleted, reported failures stay
/// and reach the DLQ after maxReceiveCount receives.
#[tokio::test(flavor = "multi_thread")]
async fn failed_batch_items_stay_and_reach_the_dlq() {
    let app = TestApp::spawn().await;
    let (_, qualify) = app.stack.manifest.function_by_binary("qualify").unwrap();
    let source = qualify.queues[0].clone();
    let queue = app.resource("QualifyQueue").to_owned();
    // The template's 60 s visibility timeout would make five receives take five minutes.
    app.sqs
        .set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .unwrap();
    for body in ["good-1", "poison", "good-2"] {
        app.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let handler: SqsHandler = Arc::new(|event: SqsEvent| {
        Box::pin(async move {
            let mut response = SqsBatchResponse::default();
            for r in event.records {
                if r.body.as_deref() == Some("poison") {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = r.message_id.unwrap_or_default();
                    response.batch_item_failures.push(f);
                }
            }
            response
        })
    });
    let poller = Poller {
        client: app.sqs.clone(),
        queue_arn: app
            .stack
            .manifest
            .queue_arns
            .get("QualifyQueue")
            .cloned()
            .unwrap_or_default(),
        source,
        handler,
    };
    let mut deleted = 0;
    let mut failed = 0;
    for _ in 0..10 {
        let o = poller.poll_once(Duration::from_secs(2)).await.unwrap();
        deleted += o.deleted;
        failed += o.failed;
        if o.received == 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    }
    assert_eq!(deleted, 2, "both good messages were processed once");
    assert_eq!(
        failed, 5,
        "the poison message was tried maxReceiveCount times"
    );
    let dlq = app.resource("QualifyDLQ").to_owned();
    let in_dlq = app
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = in_dlq.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["poison"]);
}

/// Every queue template.yaml feeds to a function is polled by that function locally, as its
/// event source mapping would in Lambda.
#[tokio::test(flavor = "multi_thread")]
async fn every_queue_is_polled_by_its_function() {
    let app = TestApp::spawn().await;
    let pollers = app.stack.pollers();
    let polled: Vec<_> = pollers
        .iter()
        .map(|p| p.source.queue_logical_id.clone())
        .collect();
    let fed: Vec<_> = app
        .stack
        .functions
        .values()
        .filter(|f| f.sqs.is_some())
        .collect();
    assert_eq!(fed.len(), 4, "score-event, qualify, route, crm-webhook");
    for f in fed {
        let queue = &f.spec.queues[0].queue_logical_id;
        assert!(polled.contains(queue), "{queue} is polled for {}", f.binary);
    }
}

/// The deployment records its `CrmSecretPrefix` on the table, where `leadflow config check`
/// reads it to tell which CRM secrets the functions may not read.
#[tokio::test(flavor = "multi_thread")]
async fn the_table_records_the_crm_secret_prefix() {
    let app = TestApp::spawn_with(&["CrmSecretPrefix=partners/acme/"]).await;
    let prefix = app
        .store()
        .table_tag("leadflow:crm-secret-prefix")
        .await
        .expect("the table's tags");
    assert_eq!(prefix.as_deref(), Some("partners/acme/"));
    assert_eq!(app.store().table_tag("no-such-tag").await.unwrap(), None);
}

/// A poller works on as many batches at once as its mapping's `ScalingConfig.MaximumConcurrency`
/// (as Lambda's event source mapping does), not one batch after the other: a backlog on one
/// queue is worked off in parallel.
#[tokio::test(flavor = "multi_thread")]
async fn a_poller_works_on_up_to_its_maximum_concurrency_of_batches_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = TestApp::spawn().await;
    let (_, qualify) = app.stack.manifest.function_by_binary("qualify").unwrap();
    let mut source = qualify.queues[0].clone();
    assert_eq!(
        source.maximum_concurrency,
        Some(5),
        "the template's PipelineMaxConcurrency reaches the local mapping"
    );
    source.batch_size = 1;
    let queue = app.resource("QualifyQueue").to_owned();
    for i in 0..5 {
        app.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let handler: SqsHandler = {
        let (in_flight, most, done) = (in_flight.clone(), most.clone(), done.clone());
        Arc::new(move |_event: SqsEvent| {
            let (in_flight, most, done) = (in_flight.clone(), most.clone(), done.clone());
            Box::pin(async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Hold the batch until all five are in flight (or give up after 5 s).
                for _ in 0..100 {
                    if most.load(Ordering::SeqCst) >= 5 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                SqsBatchResponse::default()
            })
        })
    };
    let poller = Poller {
        client: app.sqs.clone(),
        queue_arn: String::new(),
        source,
        handler,
    };
    assert_eq!(poller.concurrency(), 5);
    let task = tokio::spawn(poller.run());
    for _ in 0..200 {
        if done.load(Ordering::SeqCst) >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert_eq!(done.load(Ordering::SeqCst), 5, "every message was handled");
    assert_eq!(
        most.load(Ordering::SeqCst),
        5,
        "five single-message batches were in the function at once"
    );
}
