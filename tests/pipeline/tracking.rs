//! POST /events: behavioural events validated one by one and queued for scoring. A browser
//! names a lead only with the visitor token of its capture answer; a server with credentials
//! reports a lead's events on POST /leads/{id}/events.

use chrono::{Duration, Utc};
use leadflow_domain::ports::{LeadStore, ScoreStore};
use leadflow_domain::visitor_token::{VisitorToken, VisitorTokenKey, VISITOR_TOKEN_TTL};
use leadflow_domain::{Email, LeadId, Stage};
use serde_json::{json, Value};

use crate::support::{eventually, TestApp};

fn events_url(app: &TestApp) -> String {
    format!("{}/events", app.base_url)
}

fn at(minutes_ago: i64) -> String {
    (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339()
}

async fn post(app: &TestApp, url: &str, events: Value) -> (u16, Value) {
    let response = app
        .http
        .post(url)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Captures a new lead by JSON and gives its id (looked up by e-mail: the answer does not
/// name it) and the answer.
async fn capture(app: &TestApp, email: &str) -> (LeadId, Value) {
    let response = app
        .post_json(
            &json!({"email": email, "first_name": "Maria", "company": "Beispiel GmbH",
            "job_title": "Marketing Manager", "country": "DE", "industry": "Software"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    let lead = app
        .store()
        .find_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("the lead is stored")
        .id;
    (lead, answer)
}

fn token_of(answer: &Value) -> String {
    answer["visitor_token"]
        .as_str()
        .unwrap_or_else(|| panic!("the capture answer carries a visitor token: {answer}"))
        .to_owned()
}

/// Events that would take any lead to MQL: pricing views and downloads.
fn hot_events(prefix: &str, identity: Value) -> Vec<Value> {
    (0..6)
        .map(|i| {
            let (kind, url) = if i % 2 == 0 {
                ("page_view", "https://www.example.com/pricing")
            } else {
                ("download", "https://www.example.com/whitepaper.pdf")
            };
            let mut e = json!({"event_id": format!("{prefix}-{i}"), "type": kind, "occurred_at": at(10 - i), "url": url, "tags": ["crm"]});
            e.as_object_mut()
                .unwrap()
                .extend(identity.as_object().unwrap().clone());
            e
        })
        .collect()
}

async fn kept_events(app: &TestApp, lead: LeadId) -> usize {
    app.store()
        .score(lead)
        .await
        .unwrap()
        .map_or(0, |s| s.state.kept_events())
}

/// The key the local stack generated for this stack's capture-form (Secrets Manager on the
/// emulator), to sign tokens the way only the deployment can.
async fn stack_key(app: &TestApp) -> VisitorTokenKey {
    let client = aws_sdk_secretsmanager::Client::new(&app.stack.sdk);
    let value = client
        .get_secret_value()
        .secret_id(app.resource("VisitorTokenSecret"))
        .send()
        .await
        .expect("the visitor-token secret is on the emulator");
    VisitorTokenKey::parse(value.secret_string().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_accepted_event_by_event_and_queued() {
    let app = TestApp::spawn().await;
    let now = Utc::now().to_rfc3339();
    let someone = LeadId::new_at(Utc::now()).to_string();
    let batch = json!({"events": [
        {"event_id": "e-1", "type": "page_view", "occurred_at": now, "url": "https://www.example.com/pricing", "tags": ["crm"], "visitor_id": "v-42"},
        {"event_id": "e-2", "type": "Download!", "occurred_at": now, "visitor_id": "v-42"},
        {"event_id": "e-3", "type": "download", "occurred_at": now, "tags": ["whitepaper"], "visitor_id": "v-42", "lead_id": someone, "email": "Anna@Example.com"},
        {"event_id": "e-1", "type": "page_view", "occurred_at": now, "visitor_id": "v-42"},
        {"event_id": "e-4", "type": "download", "occurred_at": now, "email": "anna@example.com"}
    ]});
    let response = app
        .http
        .post(events_url(&app))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 2);
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(
        body["results"][1]["errors"]["type"],
        "must be 1 to 64 characters of a-z, 0-9 and _"
    );
    assert_eq!(body["results"][0]["event_id"], "e-1");
    // A bare e-mail names no one on the public route, and the answer says so by name.
    assert_eq!(body["results"][4]["status"], "rejected");
    assert!(body["results"][4]["errors"]["email"]
        .as_str()
        .unwrap()
        .contains("visitor_token"));

    let queued = app.drain("ScoreEventQueue").await;
    let ids: Vec<&str> = queued
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "e-1 is queued once, e-3 once: {ids:?}");
    assert!(ids.contains(&"e-1") && ids.contains(&"e-3"));
    let e3 = queued.iter().find(|e| e["event_id"] == "e-3").unwrap();
    assert_eq!(e3["visitor_id"], "v-42");
    assert!(
        e3.get("lead_id").is_none() && e3.get("email").is_none(),
        "a bare lead_id or e-mail is not queued as an identity: {e3}"
    );
}

/// The attack of the security review: knowing a lead's id or e-mail is not enough to raise its
/// score. The visitor token of the capture answer is.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_capture_answers_token_names_a_lead() {
    let app = TestApp::spawn_running(&["score-event", "qualify"]).await;
    let (victim, answer) = capture(&app, "victim@example.de").await;
    let token = token_of(&answer);
    assert!(answer["visitor_token_expires_at"].is_string(), "{answer}");

    // Forged: the victim's lead id and e-mail, beside an attacker's visitor id (kept as that
    // visitor's, anonymous) or alone (refused by name).
    let forged = hot_events(
        "forged",
        json!({"lead_id": victim.to_string(), "email": "victim@example.de", "visitor_id": "attacker"}),
    );
    let (status, body) = post(&app, &events_url(&app), json!(forged)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 6, "{body}");
    let (status, body) = post(
        &app,
        &events_url(&app),
        json!(hot_events("bare", json!({"lead_id": victim.to_string()}))),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(body["rejected"], 6, "{body}");
    assert!(
        body["results"][0]["errors"]["lead_id"].is_string(),
        "{body}"
    );
    let (_, body) = post(
        &app,
        &events_url(&app),
        json!(hot_events(
            "bare-mail",
            json!({"email": "victim@example.de"})
        )),
    )
    .await;
    assert_eq!(body["rejected"], 6, "{body}");

    // The forged events were scored (parked under the attacker's visitor id), not for the lead.
    let store = app.store();
    assert!(
        eventually(20, || async {
            store
                .anonymous_events("visitor:attacker")
                .await
                .map_or(0, |e| e.len())
                == 6
        })
        .await,
        "the forged events are kept as the attacker's anonymous history"
    );
    assert_eq!(
        kept_events(&app, victim).await,
        0,
        "the victim's score is untouched"
    );
    let lead = store.get(victim).await.unwrap().unwrap();
    assert!(lead.stage < Stage::Mql, "{:?}", lead.stage);

    // A tampered token, and an expired one signed with the stack's own key, are refused.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = VisitorToken::issue(
        &stack_key(&app).await,
        victim,
        Utc::now() - VISITOR_TOKEN_TTL - Duration::minutes(1),
    );
    let (_, body) = post(
        &app,
        &events_url(&app),
        json!([
            {"event_id": "t-1", "type": "download", "occurred_at": at(1), "visitor_token": tampered},
            {"event_id": "t-2", "type": "download", "occurred_at": at(1), "visitor_token": expired.as_str()},
            {"event_id": "t-3", "type": "download", "occurred_at": at(1), "visitor_token": "v1.x.y"}
        ]),
    )
    .await;
    assert_eq!(body["rejected"], 3, "{body}");
    assert_eq!(
        body["results"][0]["errors"]["visitor_token"],
        "has an invalid signature"
    );
    assert!(body["results"][1]["errors"]["visitor_token"]
        .as_str()
        .unwrap()
        .starts_with("has expired"));

    // The page's own token does: the lead is scored and becomes MQL.
    let (_, body) = post(
        &app,
        &events_url(&app),
        json!(hot_events("own", json!({"visitor_token": token}))),
    )
    .await;
    assert_eq!(body["accepted"], 6, "{body}");
    assert!(
        eventually(20, || async { kept_events(&app, victim).await == 6 }).await,
        "the token's events are scored for the lead: {}",
        kept_events(&app, victim).await
    );
    assert!(
        eventually(20, || async {
            store
                .get(victim)
                .await
                .unwrap()
                .is_some_and(|l| l.stage == Stage::Mql)
        })
        .await,
        "the lead reaches MQL by its own events"
    );
}

/// Resubmitting a known e-mail gives an answer of the same shape, whose token names no lead:
/// whoever knows the address gains no hold on the lead, and nothing reaches the DLQ.
#[tokio::test(flavor = "multi_thread")]
async fn a_resubmissions_token_names_no_lead() {
    let app = TestApp::spawn_running(&["score-event"]).await;
    let (lead, first) = capture(&app, "known@example.de").await;
    let response = app
        .post_json(
            &json!({"email": "known@example.de", "company": "Beispiel GmbH", "country": "DE"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let again: Value = response.json().await.unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&first), keys(&again), "{first} {again}");
    let token = token_of(&again);
    assert_eq!(token.len(), token_of(&first).len());

    let events = hot_events(
        "again",
        json!({"visitor_token": token, "visitor_id": "v-again"}),
    );
    let (_, body) = post(&app, &events_url(&app), json!(events)).await;
    assert_eq!(body["accepted"], 6, "{body}");
    let store = app.store();
    assert!(
        eventually(20, || async {
            store
                .anonymous_events("visitor:v-again")
                .await
                .map_or(0, |e| e.len())
                == 6
        })
        .await,
        "kept as the visitor's anonymous history"
    );
    assert_eq!(kept_events(&app, lead).await, 0);
    // A token alone, naming no lead: dropped by the scorer, not dead-lettered.
    let (_, body) = post(
        &app,
        &events_url(&app),
        json!([{"event_id": "lonely", "type": "download", "occurred_at": at(1), "visitor_token": token_of(&again)}]),
    )
    .await;
    assert_eq!(body["accepted"], 1, "{body}");
    assert!(
        eventually(10, || async {
            app.sqs
                .get_queue_attributes()
                .queue_url(app.resource("ScoreEventQueue"))
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .ok()
                .and_then(|a| {
                    let attrs = a.attributes()?.clone();
                    let n = |k| {
                        attrs
                            .get(&k)
                            .and_then(|v| v.parse::<u32>().ok())
                            .unwrap_or(1)
                    };
                    Some(
                        n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                            + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                    )
                })
                == Some(0)
        })
        .await,
        "the scoring queue is empty"
    );
    assert!(app.drain("ScoreEventDLQ").await.is_empty());
    assert_eq!(kept_events(&app, lead).await, 0);
}

/// Server-side tracking: a caller with credentials (IAM in AWS; open locally like the other
/// lead-api routes) reports a lead's events by its id.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_reports_a_leads_events_on_its_route() {
    let app = TestApp::spawn_running(&["score-event"]).await;
    let (lead, _) = capture(&app, "server@example.de").await;
    let url = format!("{}/leads/{lead}/events", app.base_url);
    let (status, body) = post(
        &app,
        &url,
        json!([
            {"event_id": "s-1", "type": "download", "occurred_at": at(2), "tags": ["whitepaper"]},
            {"event_id": "s-2", "type": "page_view", "occurred_at": at(1), "url": "https://www.example.com/pricing"},
            {"event_id": "s-3", "type": "page_view", "occurred_at": at(1), "lead_id": LeadId::new_at(Utc::now()).to_string()}
        ]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(
        body["results"][2]["errors"]["lead_id"],
        "is not taken here: the lead is the one in the path"
    );
    assert!(
        eventually(20, || async { kept_events(&app, lead).await == 2 }).await,
        "both events scored for the lead"
    );
    let nobody = format!(
        "{}/leads/{}/events",
        app.base_url,
        LeadId::new_at(Utc::now())
    );
    let (status, _) = post(
        &app,
        &nobody,
        json!([{"event_id": "n-1", "type": "download", "occurred_at": at(1)}]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(&app, &url, json!([])).await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_batches_are_4xx() {
    let app = TestApp::spawn().await;
    let post = |body: String, ct: &'static str| {
        app.http
            .post(events_url(&app))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_eq!(
        post("{\"events\": [".into(), "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("events=1".into(), "application/x-www-form-urlencoded")
            .await
            .unwrap()
            .status(),
        415
    );
    let empty = post(json!({"events": []}).to_string(), "application/json")
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    assert!(empty.json::<Value>().await.unwrap()["fields"]["events"].is_string());
    let now = chrono::Utc::now().to_rfc3339();
    let many: Vec<Value> = (0..101).map(|i| json!({"event_id": format!("e{i}"), "type": "page_view", "occurred_at": now, "visitor_id": "v"})).collect();
    assert_eq!(
        post(json!({"events": many}).to_string(), "application/json")
            .await
            .unwrap()
            .status(),
        422
    );
    let huge = json!({"events": [{"event_id": "x", "type": "page_view", "occurred_at": now, "visitor_id": "v", "url": format!("https://e.com/{}", "a".repeat(140 * 1024))}]});
    assert_eq!(
        post(huge.to_string(), "application/json")
            .await
            .unwrap()
            .status(),
        413
    );
    assert!(app.drain("ScoreEventQueue").await.is_empty());
}

/// Reports `events` of `lead` as a server would (`POST /leads/{id}/events`); all are accepted.
pub async fn post_lead_events(app: &TestApp, lead: LeadId, events: Value) {
    let url = format!("{}/leads/{lead}/events", app.base_url);
    let (status, body) = post(app, &url, events).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}
