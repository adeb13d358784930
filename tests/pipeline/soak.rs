//! The soak with faults, small (docs/performance.md, "Soak with faults"; `load-bench` with
//! `--duplicate-deliveries --crm-fail-first 20 --poison N` is the full size): sales-ready
//! leads through the whole pipeline while every queue message is delivered twice (redelivered
//! after a success, or to two invocations at once), the CRM fails the first attempt of half
//! the webhook-ids, and poison messages sit among the real ones. Then, lead by lead: captured,
//! each event scored once, routed once, delivered under one webhook-id; the poison on its DLQ,
//! nothing else there.

use std::time::{Duration, Instant};

use leadflow_domain::webhook::WebhookSecret;
use leadflow_local::poller::DeliveryFaults;
use leadflow_local::soak::{self, StandInCrm, POISON_QUEUES};
use leadflow_local::stack::WEBHOOK_SECRET_PARAM;

use crate::support::TestApp;

const LEADS: usize = 24;
/// Two on each queue that takes batches of 10 (CrmWebhookQueue lets a message through 50
/// receives: the bench poisons it too).
const POISON: usize = 6;
/// Of the webhook-ids, the share whose first attempt the CRM fails: higher than the full
/// size's 20 % so that a run of 24 leads surely meets some.
const CRM_FAIL_FIRST: u8 = 50;

#[tokio::test(flavor = "multi_thread")]
async fn leads_survive_duplicate_deliveries_a_failing_crm_and_poison() {
    let started = Instant::now();
    let secret_value = soak::random_secret();
    let secret = WebhookSecret::parse(&secret_value).expect("a valid secret");
    let app = TestApp::spawn_with(&[
        &format!("{WEBHOOK_SECRET_PARAM}={secret_value}"),
        // A failed delivery comes back after 0.5 to 1 s, not the template's 15 to 30.
        "CrmRetryBaseSeconds=1",
    ])
    .await;
    let crm = StandInCrm::start(secret, CRM_FAIL_FIRST)
        .await
        .expect("the CRM listens");
    let example = std::fs::read_to_string(leadflow_local::config::example_path()).unwrap();
    let example_crm = "http://127.0.0.1:9000/hooks/leadflow";
    assert!(example.contains(example_crm), "the example's CRM endpoint");
    leadflow_local::config::push(&app.stack, &example.replace(example_crm, &crm.url), None)
        .await
        .expect("the configuration is accepted");

    // The leads, half of them before the poison and half after, while nothing polls yet: the
    // poison then shares its first batches with real messages.
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let queues = &POISON_QUEUES[..3];
    let mut posted = Vec::new();
    let mut poison = Vec::new();
    for half in 0..2 {
        let mut clients = tokio::task::JoinSet::new();
        for i in (half * LEADS / 2)..((half + 1) * LEADS / 2) {
            let (http, api) = (app.http.clone(), app.base_url.clone());
            let email = format!("soak-{run_id}-{i:03}@example.de");
            clients.spawn(async move { soak::post_lead(&http, &api, email).await });
        }
        while let Some(done) = clients.join_next().await {
            match done.expect("a client") {
                Ok(p) => posted.push(p),
                Err(f) => panic!("a lead was refused: {}", f.reason),
            }
        }
        if half == 0 {
            for n in 0..POISON {
                poison.push(
                    soak::send_poison(&app.stack, &app.sqs, &run_id, queues, n)
                        .await
                        .expect("poison sent"),
                );
            }
        }
    }

    // The pipeline, with every message delivered twice and failed ones back within a second.
    let faults = DeliveryFaults {
        duplicates: true,
        visibility_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let taken_in = started.elapsed();
    let mut pollers = tokio::task::JoinSet::new();
    for p in app.stack.pollers() {
        pollers.spawn(p.run_with(faults.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    while crm.delivered() < LEADS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let delivered = started.elapsed();
    let settled = soak::settle(&app.stack, &app.sqs, &poison, Duration::from_secs(90))
        .await
        .expect("the queues can be read");
    let log = crm.log();
    let check = soak::check_leads(&app.stack, &posted, &log)
        .await
        .expect("the table can be read");
    let report = soak::SoakReport {
        check,
        settled,
        deliveries: faults.stats.counts(),
    };
    pollers.shutdown().await;
    println!(
        "soak: {LEADS} leads taken in after {:.1} s (stack included), at the CRM after {:.1} s, checked after {:.1} s\n{}",
        taken_in.as_secs_f64(),
        delivered.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        report.report()
    );

    // The faults happened...
    let d = report.deliveries;
    assert!(
        d.redelivered > 0 && d.concurrent > 0,
        "duplicates of both shapes: {d:?}"
    );
    assert!(
        report.check.failed_on_purpose > 0,
        "the CRM failed some first attempts"
    );
    assert!(
        d.batches_with_failures > 0 && d.succeeded_beside_failures > 0,
        "poison shared batches with real messages: {d:?}"
    );
    // ...and nothing was lost or done twice.
    assert_eq!(report.check.leads, LEADS);
    assert!(report.ok(), "{}", report.report());
}
