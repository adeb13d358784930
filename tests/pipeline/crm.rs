//! The CRM handover on the emulator, against a real HTTP receiver acting as the CRM: signed
//! delivery of the whole lead context, retries after errors and timeouts with one webhook-id,
//! the DLQ after the retry window and its replay, and the CRM's signed callbacks.

use std::time::Duration;

use chrono::Utc;
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_domain::ports::LeadStore;
use leadflow_domain::scoring::{Grade, Temperature};
use leadflow_domain::webhook::WebhookSecret;
use leadflow_domain::{LeadId, Stage, TimelineEntry};
use leadflow_lambda::active_config::ActiveConfig;
use route::Route;
use serde_json::{json, Value};

use crate::crm_receiver::{verified_independently, CrmReceiver, Reply};
use crate::support::{crm_callback, eventually, TestApp};

/// The CRM of the owners (config: `env:CRM_WEBHOOK_SECRET`: the template's signing secret in
/// Secrets Manager, which the local stack sets to this value).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The partner's CRM, whose secret is in Secrets Manager.
const PARTNER_SECRET: &str = "whsec_cGFydG5lci1zZWNyZXQtb2YtMzItYnl0ZXMhIQ==";

fn config(owner_crm: &str, partner_crm: &str, partner_secret_arn: &str) -> String {
    let scoring = crate::support::example_scoring();
    format!(
        r#"{scoring}
routing:
  default_pool: sales
  crm: {{ endpoint: "{owner_crm}", secret: "env:CRM_WEBHOOK_SECRET" }}
  owners:
    - {{ id: anna, name: Anna Berg, email: anna@example.com }}
  partners:
    - {{ id: reseller-at, name: Alpen IT, crm: {{ endpoint: "{partner_crm}", secret: "{partner_secret_arn}" }} }}
  pools:
    - {{ id: sales, members: [anna], sla: {{ accept_within_hours: 24 }} }}
    - {{ id: austria, partner: reseller-at, sla: {{ accept_within_hours: 48 }} }}
  rules:
    - {{ id: austria, countries: [AT], pool: austria }}
"#
    )
}

struct Crm {
    app: TestApp,
    owners: CrmReceiver,
    partner: CrmReceiver,
    partner_secret_arn: String,
}

/// A stack whose crm-webhook runs (with `params`), the receivers, and the config naming them.
async fn crm_stack(owners: &[Reply], params: &[&str], running: &[&str]) -> Crm {
    let secret_param = format!("CrmWebhookSecret={SECRET}");
    let mut all = vec!["ConfigCacheSeconds=0", secret_param.as_str()];
    all.extend_from_slice(params);
    let mut app = TestApp::spawn_with(&all).await;
    let api = app.base_url.clone();
    app.stack
        .override_env("PUBLIC_API_URL", &api)
        .expect("functions rebuilt");
    let app = app.run(running);
    let owners = CrmReceiver::start(owners).await;
    let partner = CrmReceiver::start(&[]).await;
    let sm = aws_sdk_secretsmanager::Client::new(&app.stack.sdk);
    let arn = sm
        .create_secret()
        .name(format!("leadflow/crm/{}", app.stack.manifest.stack_name))
        .secret_string(PARTNER_SECRET)
        .send()
        .await
        .expect("secret created")
        .arn()
        .expect("an ARN")
        .to_owned();
    app.push_config(&config(&owners.url, &partner.url, &arn))
        .await;
    Crm {
        app,
        owners,
        partner,
        partner_secret_arn: arn,
    }
}

/// A lead at MQL (grade B, warm), as qualify leaves it.
async fn mql(app: &TestApp, email: &str, country: &str) -> LeadId {
    crate::support::mql(
        app,
        email,
        &[
            ("first_name", "Jana"),
            ("company", "Beispiel GmbH"),
            ("country", country),
        ],
        Grade::B,
        Temperature::Warm,
    )
    .await
}

/// Routes the lead as the route function does on `LeadQualified` (LeadRouted goes to the bus).
async fn route(app: &TestApp, lead: LeadId) {
    Route::new(
        app.store(),
        EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus")),
        ActiveConfig::<DynamoStore>::new(app.store(), Duration::ZERO),
    )
    .route(lead, Utc::now())
    .await
    .expect("routed");
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

/// POSTs a callback signed with `secret` at `ts` (Unix seconds).
async fn say(app: &TestApp, body: Value) -> (u16, Value) {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let (s, v, _) = crm_callback(app, SECRET, &id, Utc::now().timestamp(), &body).await;
    (s, v)
}

async fn stage(app: &TestApp, lead: LeadId) -> Stage {
    app.store().get(lead).await.unwrap().unwrap().stage
}

/// The issue's "done when": a lead that turns MQL on the local stack reaches the owner's CRM,
/// signed, with everything known about it; the CRM's `accepted` moves it to SAL.
#[tokio::test(flavor = "multi_thread")]
async fn a_lead_that_turns_mql_reaches_the_crm_signed_and_accepted_moves_it_to_sal() {
    let crm = crm_stack(
        &[],
        &[],
        &["score-event", "qualify", "route", "crm-webhook"],
    )
    .await;
    let app = &crm.app;
    let lead = app
        .capture(
            &json!({"email": "maria@example.de", "first_name": "Maria", "company": "Beispiel GmbH",
            "job_title": "Marketing Manager", "country": "DE", "industry": "Software",
            "utm_source": "newsletter", "utm_campaign": "spring", "consent": true}),
        )
        .await;
    let at = |s: i64| (Utc::now() - chrono::Duration::seconds(s)).to_rfc3339();
    crate::tracking::post_lead_events(app, lead, json!([
        {"event_id": "p-1", "type": "page_view", "occurred_at": at(3), "url": "https://www.example.com/pricing"},
        {"event_id": "p-2", "type": "page_view", "occurred_at": at(2), "url": "https://www.example.com/pricing"},
        {"event_id": "d-1", "type": "download", "occurred_at": at(1), "url": "https://www.example.com/whitepaper.pdf", "tags": ["whitepaper"]}
    ]))
    .await;
    let got = crm.owners.wait_for(1, 60).await;
    assert_eq!(
        got.len(),
        1,
        "one delivery: {:?}",
        app.store().timeline(lead).await
    );
    let delivery = &got[0];
    assert!(
        verified_independently(SECRET, delivery),
        "the signature verifies with an independent HMAC"
    );
    let routed = app.store().get(lead).await.unwrap().unwrap();
    let assignment = routed.assignment.clone().expect("routed");
    let latency = delivery.at.elapsed();
    eprintln!("routed at {}, delivered {:?} ago", assignment.at, latency);
    let body = delivery.json();
    assert_eq!(body["type"], "lead.routed");
    assert_eq!(body["version"], 1);
    let data = &body["data"];
    assert_eq!(data["lead_id"], lead.to_string());
    assert_eq!(data["contact"]["email"], "maria@example.de");
    assert_eq!(data["company"]["name"], "Beispiel GmbH");
    assert_eq!(data["attribution"]["utm"]["campaign"], "spring");
    assert_eq!(data["consent"]["given"], true);
    assert_eq!(data["assignment"]["assigned_to"]["id"], "anna");
    assert!(data["assignment"]["sla_deadline"].is_string());
    let explanation = data["score"]["explanation"].as_array().expect("explained");
    assert!(
        explanation.iter().any(|c| c["rule_id"] == "pricing-page"),
        "{explanation:?}"
    );
    let activities = data["activities"].as_array().unwrap();
    assert!(!activities.is_empty() && activities.len() <= 20);
    assert!(data["interests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["tag"] == "whitepaper"));
    assert!(data["links"]["callback"]
        .as_str()
        .unwrap()
        .ends_with("/crm/events"));
    assert!(delivery.header("webhook-id").starts_with("msg_"));
    assert!(
        eventually(10, || async {
            !timeline(app, lead, "crm_delivered").await.is_empty()
        })
        .await
    );

    let (status, answer) = say(app, json!({"status": "accepted", "lead_id": lead.to_string(), "external_id": "006A1", "by": "anna"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stage"], "SAL");
    let accepted = app.store().get(lead).await.unwrap().unwrap();
    assert_eq!(accepted.stage, Stage::Sal);
    assert!(
        accepted.assignment.unwrap().accepted_at.is_some(),
        "the SLA clock stopped"
    );
    assert_eq!(accepted.crm.unwrap().external_id.as_deref(), Some("006A1"));
}

/// 500, a timeout and 500 again: the fourth attempt delivers, all four with one webhook-id and
/// valid signatures, each attempt on the timeline.
#[tokio::test(flavor = "multi_thread")]
async fn a_crm_failing_three_times_gets_the_lead_on_the_fourth_try_with_one_webhook_id() {
    let crm = crm_stack(
        &[
            Reply::Status(500),
            Reply::Hang(Duration::from_secs(7)),
            Reply::Status(503),
        ],
        &["CrmRetryBaseSeconds=1"],
        &["crm-webhook"],
    )
    .await;
    let app = &crm.app;
    let lead = mql(app, "retry@example.com", "DE").await;
    route(app, lead).await;
    let got = crm.owners.wait_for(4, 60).await;
    assert_eq!(got.len(), 4, "four attempts");
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "one webhook-id on every attempt: {ids:?}");
    for r in &got {
        assert!(verified_independently(SECRET, r), "every attempt is signed");
    }
    for pair in got.windows(2) {
        assert!(pair[1].at > pair[0].at);
    }
    assert!(
        eventually(10, || async {
            timeline(app, lead, "crm_delivered").await.len() == 1
        })
        .await
    );
    let attempts = timeline(app, lead, "crm_delivery_attempt").await;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let outcomes: Vec<String> = attempts
        .iter()
        .map(|e| e.detail["outcome"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        outcomes.iter().any(|o| o.contains("HTTP 500")),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o.contains("no answer within 5 s")),
        "{outcomes:?}"
    );
    assert!(attempts
        .iter()
        .all(|e| e.detail["retry_in_seconds"].as_u64().is_some()));
    // Nothing is delivered twice: the queue is empty and nothing else arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(crm.owners.received().len(), 4);
}

/// A CRM that never answers well: after the retry window the delivery is parked on the DLQ
/// (with why); the replay re-drives it and the same webhook-id arrives.
#[tokio::test(flavor = "multi_thread")]
async fn after_the_retry_window_the_dlq_holds_the_delivery_and_replay_delivers_it() {
    let crm = crm_stack(
        &[],
        &["CrmRetryBaseSeconds=1", "CrmRetryWindowSeconds=4"],
        &["crm-webhook"],
    )
    .await;
    crm.owners.answer_from_now_on(Reply::Status(502));
    let app = &crm.app;
    let lead = mql(app, "dlq@example.com", "DE").await;
    route(app, lead).await;
    assert!(
        eventually(40, || async {
            !timeline(app, lead, "crm_delivery_given_up")
                .await
                .is_empty()
        })
        .await,
        "given up: {:?}",
        app.store().timeline(lead).await
    );
    let tried = crm.owners.received();
    assert!(
        tried.len() >= 2,
        "retried within the window: {}",
        tried.len()
    );
    let webhook_id = tried[0].header("webhook-id").to_owned();

    crm.owners.answer_from_now_on(Reply::Status(204));
    let sqs = &app.sqs;
    let report = leadflow_aws::sqs::redrive(
        sqs,
        app.resource("CrmWebhookDLQ"),
        app.resource("CrmWebhookQueue"),
        None,
    )
    .await
    .expect("replayed");
    assert_eq!(report.moved, 1, "{report:?}");
    assert!(
        report
            .reasons
            .keys()
            .any(|r| r.contains("gave up") && r.contains("502")),
        "{report:?}"
    );
    let all = crm.owners.wait_for(tried.len() + 1, 30).await;
    let last = all.last().unwrap();
    assert_eq!(
        last.header("webhook-id"),
        webhook_id,
        "the replay keeps the webhook-id"
    );
    assert!(verified_independently(SECRET, last));
    assert!(
        eventually(10, || async {
            timeline(app, lead, "crm_delivered").await.len() == 1
        })
        .await
    );
}

/// Every status a CRM can report, with the transitions the lifecycle allows and refuses.
#[tokio::test(flavor = "multi_thread")]
async fn callbacks_move_the_lead_through_every_status() {
    let crm = crm_stack(&[], &[], &[]).await;
    let app = &crm.app;
    let lead = mql(app, "statuses@example.com", "DE").await;
    route(app, lead).await;
    let id = lead.to_string();

    // Linked on the first callback; from then on the CRM's id is enough.
    let (s, a) = say(
        app,
        json!({"status": "accepted", "lead_id": id, "external_id": "0061"}),
    )
    .await;
    assert_eq!((s, a["stage"].as_str()), (200, Some("SAL")), "{a}");
    let (s, a) = say(
        app,
        json!({"status": "qualified", "external_id": "0061", "bant": {"need": "CRM migration"}}),
    )
    .await;
    assert_eq!(s, 422, "an SQL needs complete BANT: {a}");
    assert!(a["fields"]["bant"].is_string(), "{a}");
    let (s, a) = say(app, json!({"status": "qualified", "external_id": "0061", "by": "anna",
        "bant": {"budget": {"amount": 50000, "currency": "EUR"}, "authority": "decision_maker", "need": "CRM migration", "timeframe": "this_quarter"}})).await;
    assert_eq!((s, a["stage"].as_str()), (200, Some("SQL")), "{a}");
    let (s, a) = say(app, json!({"status": "opportunity", "external_id": "0061"})).await;
    assert_eq!(s, 422, "{a}");
    assert!(a["fields"]["amount"].is_string() && a["fields"]["currency"].is_string());
    let (s, a) = say(
        app,
        json!({"status": "opportunity", "external_id": "0061", "amount": 48000, "currency": "EUR"}),
    )
    .await;
    assert_eq!((s, a["stage"].as_str()), (200, Some("Opportunity")), "{a}");
    let (s, a) = say(app, json!({"status": "won", "external_id": "0061"})).await;
    assert_eq!((s, a["stage"].as_str()), (200, Some("Customer")), "{a}");
    let won = app.store().get(lead).await.unwrap().unwrap();
    assert_eq!(
        won.crm
            .as_ref()
            .unwrap()
            .opportunity
            .as_ref()
            .unwrap()
            .amount,
        48000
    );
    assert!(won.bant.unwrap().is_complete());
    // A customer stays one: the answer names what is allowed (nothing).
    let (s, a) = say(app, json!({"status": "recycled", "external_id": "0061"})).await;
    assert_eq!(s, 409, "{a}");
    assert_eq!(a["from"], "Customer");
    assert_eq!(a["allowed"], json!([]));
    let changes: Vec<String> = timeline(app, lead, "stage_changed")
        .await
        .iter()
        .map(|e| e.detail["to"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(changes, ["SAL", "SQL", "Opportunity", "Customer"]);

    // Rejected needs a reason; the graph refuses skipping to won.
    let rejected = mql(app, "rejected@example.com", "DE").await;
    route(app, rejected).await;
    // One CRM id names one lead.
    let (s, a) = say(
        app,
        json!({"status": "accepted", "lead_id": rejected.to_string(), "external_id": "0061"}),
    )
    .await;
    assert_eq!((s, a["field"].as_str()), (409, Some("external_id")), "{a}");
    assert_eq!(stage(app, rejected).await, Stage::Mql);
    let (s, a) = say(
        app,
        json!({"status": "won", "lead_id": rejected.to_string()}),
    )
    .await;
    assert_eq!(s, 409, "{a}");
    assert_eq!(a["allowed"], json!(["SAL", "SQL", "Rejected", "Recycled"]));
    let (s, a) = say(
        app,
        json!({"status": "rejected", "lead_id": rejected.to_string()}),
    )
    .await;
    assert_eq!(s, 422, "{a}");
    assert!(a["fields"]["reason"].is_string());
    let (s, _) = say(
        app,
        json!({"status": "rejected", "lead_id": rejected.to_string(), "reason": "a student"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(stage(app, rejected).await, Stage::Rejected);

    // Recycled and lost go back to marketing without an owner, to be routed afresh.
    let recycled = mql(app, "recycled@example.com", "DE").await;
    route(app, recycled).await;
    let (s, _) = say(
        app,
        json!({"status": "recycled", "lead_id": recycled.to_string(), "reason": "next year"}),
    )
    .await;
    assert_eq!(s, 200);
    let back = app.store().get(recycled).await.unwrap().unwrap();
    assert_eq!(back.stage, Stage::Recycled);
    assert!(back.assignment.is_none());
    let lost = mql(app, "lost@example.com", "DE").await;
    route(app, lost).await;
    for body in [
        json!({"status": "accepted", "lead_id": lost.to_string()}),
        json!({"status": "opportunity", "lead_id": lost.to_string(), "amount": 9000, "currency": "EUR"}),
        json!({"status": "lost", "lead_id": lost.to_string(), "reason": "went with a competitor"}),
    ] {
        let (s, a) = say(app, body).await;
        assert_eq!(s, 200, "{a}");
    }
    let gone = app.store().get(lost).await.unwrap().unwrap();
    assert_eq!(gone.stage, Stage::Recycled);
    assert_eq!(
        gone.crm.unwrap().status,
        leadflow_domain::crm_record::CrmStatus::Lost
    );

    // Unknown ids.
    let (s, a) = say(app, json!({"status": "accepted", "external_id": "nobody"})).await;
    assert_eq!((s, a["field"].as_str()), (404, Some("external_id")), "{a}");
    let (s, _) = say(
        app,
        json!({"status": "accepted", "lead_id": LeadId::new_at(Utc::now()).to_string()}),
    )
    .await;
    assert_eq!(s, 404);
    // Stage changes reached the bus for marketing (the loop).
    let events = app
        .store()
        .timeline(lost)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "stage_changed")
        .count();
    assert_eq!(events, 3);
}

/// Unsigned, stale, forged and replayed callbacks; another CRM's leads are off limits.
#[tokio::test(flavor = "multi_thread")]
async fn callbacks_must_be_signed_fresh_and_by_the_leads_crm() {
    let crm = crm_stack(&[], &[], &["crm-webhook"]).await;
    let app = &crm.app;
    let lead = mql(app, "signed@example.com", "DE").await;
    route(app, lead).await;
    let austrian = mql(app, "wien@example.at", "AT").await;
    route(app, austrian).await;
    let body = json!({"status": "accepted", "lead_id": lead.to_string()});
    let now = Utc::now().timestamp();

    let unsigned = app
        .http
        .post(format!("{}/crm/events", app.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let answer: Value = unsigned.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("webhook-id"),
        "{answer}"
    );

    let (s, a, _) = crm_callback(app, SECRET, "msg_stale", now - 301, &body).await;
    assert_eq!(s, 401, "{a}");
    assert!(a["error"].as_str().unwrap().contains("5 minutes"), "{a}");
    let (s, _, _) = crm_callback(app, SECRET, "msg_future", now + 301, &body).await;
    assert_eq!(s, 401);
    let (s, _, _) = crm_callback(
        app,
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "msg_forged",
        now,
        &body,
    )
    .await;
    assert_eq!(s, 401);
    // A body changed after signing.
    let signature = WebhookSecret::parse(SECRET).unwrap().sign(
        "msg_tampered",
        now,
        body.to_string().as_bytes(),
    );
    let tampered = app
        .http
        .post(format!("{}/crm/events", app.base_url))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_tampered")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(json!({"status": "rejected", "lead_id": lead.to_string(), "reason": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);
    assert_eq!(
        stage(app, lead).await,
        Stage::Mql,
        "nothing unsigned changed the lead"
    );

    // Signed: applied once; the same webhook-id again answers the same and changes nothing.
    let (s, first, _) = crm_callback(app, SECRET, "msg_once", now, &body).await;
    assert_eq!(
        (s, first["changed"].as_bool()),
        (200, Some(true)),
        "{first}"
    );
    let (s, again, headers) = crm_callback(app, SECRET, "msg_once", now, &body).await;
    assert_eq!((s, &again), (200, &first));
    assert_eq!(
        headers.get("webhook-replayed").map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(timeline(app, lead, "stage_changed").await.len(), 1);
    // A new webhook-id repeating the status is answered, unchanged.
    let (s, a) = say(app, body.clone()).await;
    assert_eq!((s, a["changed"].as_bool()), (200, Some(false)), "{a}");

    // The partner's CRM (secret in Secrets Manager) may speak for its lead, not for anna's.
    let (s, a, _) = crm_callback(
        app,
        PARTNER_SECRET,
        "msg_p1",
        now,
        &json!({"status": "accepted", "lead_id": austrian.to_string()}),
    )
    .await;
    assert_eq!((s, a["stage"].as_str()), (200, Some("SAL")), "{a}");
    let (s, a, _) = crm_callback(
        app,
        PARTNER_SECRET,
        "msg_p2",
        now,
        &json!({"status": "rejected", "lead_id": lead.to_string(), "reason": "x"}),
    )
    .await;
    assert_eq!(s, 403, "{a}");
    let (s, _, _) = crm_callback(
        app,
        SECRET,
        "msg_p3",
        now,
        &json!({"status": "rejected", "lead_id": austrian.to_string(), "reason": "x"}),
    )
    .await;
    assert_eq!(s, 403);
    // Each lead went to its own CRM, signed with that CRM's secret (the partner's from
    // Secrets Manager): the partner was offered the lead without contact data, and got it
    // whole once it accepted.
    let partner = crm.partner.wait_for(2, 30).await;
    let kinds: Vec<_> = partner.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(kinds, ["lead.offered", "lead.routed"]);
    for delivery in &partner {
        assert_eq!(delivery.json()["data"]["lead_id"], austrian.to_string());
        assert!(verified_independently(PARTNER_SECRET, delivery));
        assert!(!verified_independently(SECRET, delivery));
    }
    assert!(partner[0].json()["data"]["contact"].is_null());
    assert!(partner[1].json()["data"]["contact"]["email"].is_string());
    let owners = crm.owners.wait_for(1, 30).await;
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].json()["data"]["lead_id"], lead.to_string());

    // The partner rotates its secret: the next call signed with the new one is taken (the
    // cached value is read afresh), the old one no longer is.
    const ROTATED: &str = "whsec_cm90YXRlZC1wYXJ0bmVyLXNlY3JldC0zMi1ieXRlcyE=";
    aws_sdk_secretsmanager::Client::new(&app.stack.sdk)
        .put_secret_value()
        .secret_id(&crm.partner_secret_arn)
        .secret_string(ROTATED)
        .send()
        .await
        .expect("rotated");
    let reject =
        json!({"status": "rejected", "lead_id": austrian.to_string(), "reason": "no budget"});
    // Earlier forged calls may have refreshed the cache moments ago; refreshes are spaced
    // a few seconds apart, as a CRM's retries would be.
    let mut answer = (0, Value::Null);
    for n in 0..8 {
        let id = format!("msg_r{n}");
        let (s, a, _) = crm_callback(app, ROTATED, &id, Utc::now().timestamp(), &reject).await;
        answer = (s, a);
        if s == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        (answer.0, answer.1["stage"].as_str()),
        (200, Some("Rejected")),
        "{}",
        answer.1
    );
    let (s, _, _) = crm_callback(app, PARTNER_SECRET, "msg_old", now, &reject).await;
    assert_eq!(s, 401, "the old secret is gone");
}

/// Outside local mode a CRM on this machine is refused: at push, naming where it is
/// configured; and a configuration that names one all the same (pushed before, or a name that
/// resolves there) gets no delivery: nothing is sent, the delivery goes to the DLQ at once
/// (no retries) and the timeline says why.
#[tokio::test(flavor = "multi_thread")]
async fn outside_local_mode_a_crm_on_this_machine_is_refused_at_push_and_at_send_time() {
    let secret_param = format!("CrmWebhookSecret={SECRET}");
    let mut app = TestApp::spawn_with(&["ConfigCacheSeconds=0", secret_param.as_str()]).await;
    // The signing secret reaches the functions as an ARN, never as its value.
    for binary in ["crm-webhook", "crm-callback"] {
        let env = &app.stack.function(binary).expect(binary).spec.environment;
        assert!(
            env.get("CRM_WEBHOOK_SECRET_ARN")
                .is_some_and(|a| a.starts_with("arn:aws:secretsmanager:")),
            "{binary}: {env:?}"
        );
        assert!(!env.contains_key("CRM_WEBHOOK_SECRET"), "{binary}: {env:?}");
        assert!(
            !env.values().any(|v| v.contains(SECRET)),
            "{binary}: {env:?}"
        );
    }
    app.stack.run_as_deployed().expect("functions rebuilt");
    let app = app.run(&["crm-webhook"]);
    let owners = CrmReceiver::start(&[]).await;
    assert!(
        owners.url.starts_with("http://127.0.0.1:"),
        "{}",
        owners.url
    );
    let yaml = config(
        &owners.url,
        "https://partner.example.at/leads",
        "env:CRM_WEBHOOK_SECRET",
    );

    let err = leadflow_local::config::push(&app.stack, &yaml, Some("test"))
        .await
        .expect_err("refused at push");
    assert!(
        err.contains("routing.crm.endpoint") && err.contains("loopback address (127.0.0.1)"),
        "{err}"
    );
    let https = yaml.replace(&owners.url, "https://169.254.169.254/latest/meta-data/");
    let err = leadflow_local::config::push(&app.stack, &https, Some("test"))
        .await
        .expect_err("the metadata service is refused too");
    assert!(err.contains("link-local"), "{err}");

    // In force all the same (stored past the check, as a version pushed in local mode would be).
    app.push_config(&yaml).await;
    let lead = mql(&app, "ssrf@example.com", "DE").await;
    route(&app, lead).await;
    assert!(
        eventually(30, || async {
            !timeline(&app, lead, "crm_delivery_given_up")
                .await
                .is_empty()
        })
        .await,
        "given up: {:?}",
        app.store().timeline(lead).await
    );
    let given_up = timeline(&app, lead, "crm_delivery_given_up").await;
    let reason = given_up[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("not sent") && reason.contains("loopback"),
        "{reason}"
    );
    assert_eq!(given_up[0].detail["attempt"], 1, "no retry: {given_up:?}");
    assert!(timeline(&app, lead, "crm_delivery_attempt")
        .await
        .is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(owners.received().is_empty(), "nothing reached the receiver");
    let parked = app
        .sqs
        .receive_message()
        .queue_url(app.resource("CrmWebhookDLQ"))
        .wait_time_seconds(2)
        .send()
        .await
        .expect("DLQ read");
    assert_eq!(parked.messages().len(), 1, "the delivery waits on the DLQ");
}
