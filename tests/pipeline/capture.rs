//! POST /leads over real HTTP, against tables, bus and queues provisioned from template.yaml.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use leadflow_domain::ports::{Counters, LeadStore, LeadWrite};
use leadflow_domain::provenance::FieldSource;
use leadflow_domain::{Email, LeadId, Stage};
use serde_json::{json, Value};

use crate::support::{s, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_html_form_is_stored_once_and_announced() {
    let app = TestApp::spawn().await;
    // Byte for byte what a browser sends for <form method="post" action="/leads"> on a UTF-8
    // page: percent-encoded UTF-8, '+' for spaces, a checkbox as "on".
    let body = "email=J%C3%B6rg.M%C3%BCller%40Beispiel.de&first_name=J%C3%B6rg&last_name=M%C3%BCller&company=M%C3%BCller+%26+S%C3%B6hne+GmbH&country=de&job_title=Gesch%C3%A4ftsf%C3%BChrer&utm_source=newsletter&consent=on&consent_text=Ich+stimme+zu";
    let response = app
        .http
        .post(app.leads_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    assert!(answer.get("lead_id").is_none(), "no lead id: {answer}");
    let submission_id = answer["submission_id"].as_str().unwrap().to_owned();

    let store = leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table());
    let lead = store
        .find_by_email(&Email::parse("jörg.müller@beispiel.de").unwrap())
        .await
        .unwrap()
        .expect("the lead is stored");
    let lead_id = lead.id;
    assert_eq!(lead.email.as_str(), "jörg.müller@beispiel.de");
    assert_eq!(lead.company.as_deref(), Some("Müller & Söhne GmbH"));
    assert_eq!(lead.job_title.as_deref(), Some("Geschäftsführer"));
    assert_eq!(lead.country.as_deref(), Some("DE"));
    assert_eq!(lead.stage, Stage::Inquiry);
    assert_eq!(lead.version, 1);
    let consent = lead.consent.expect("consent proof");
    assert!(consent.given);
    assert_eq!(consent.text.as_deref(), Some("Ich stimme zu"));
    assert_eq!(consent.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        consent.user_agent.as_deref(),
        Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/130")
    );
    let timeline = store.timeline(lead_id).await.unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].action, "captured");
    assert_eq!(
        timeline[0].detail["submission_id"], submission_id,
        "the answer's id finds the submission on the timeline"
    );

    let events = app.captured_events().await;
    assert_eq!(events.len(), 1, "one LeadCaptured in the qualify queue");
    assert_eq!(events[0]["detail"]["lead_id"], lead_id.to_string());
    assert_eq!(
        events[0]["detail"]["schema_version"],
        leadflow_domain::SCHEMA_VERSION
    );
    assert!(
        app.items("outbox").await.is_empty(),
        "a published event leaves the outbox"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_email_fills_the_one_lead_and_proposes_what_differs() {
    let app = TestApp::spawn().await;
    let first = app
        .post_json(
            &json!({"email": "anna@example.com", "company": "Alt GmbH", "phone": "+49 30 1234"}),
        )
        .await;
    assert_eq!(first.status(), 201);

    let again = app.post_json(&json!({"email": " ANNA@example.com ", "company": "Neu AG", "job_title": "CTO", "phone": ""})).await;
    assert_eq!(again.status(), 201);

    let leads = app.items("lead").await;
    assert_eq!(leads.len(), 1);
    assert_eq!(
        s(&leads[0], "company"),
        "Alt GmbH",
        "a public form does not overwrite"
    );
    assert_eq!(s(&leads[0], "job_title"), "CTO", "an empty field is filled");
    assert_eq!(
        s(&leads[0], "phone"),
        "+49 30 1234",
        "an empty field never erases"
    );
    let store = leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table());
    let timeline = store
        .timeline(s(&leads[0], "id").parse().unwrap())
        .await
        .unwrap();
    let actions: Vec<_> = timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["captured", "resubmitted", "change_proposed"]);
    assert_eq!(timeline[1].detail["added_fields"], json!(["job_title"]));
    assert_eq!(timeline[2].detail["fields"], json!(["company"]));
    assert_eq!(timeline[2].detail["proposed"]["company"], "Neu AG");
    assert_eq!(
        app.captured_events().await.len(),
        1,
        "a resubmission is not a second capture"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_submissions_of_one_email_make_one_lead() {
    let app = TestApp::spawn().await;
    let requests = (0..20).map(|i| {
        let http = app.http.clone();
        let url = app.leads_url();
        async move {
            http.post(url)
                .json(&json!({"email": "rush@example.com", "custom_fields": {"attempt": i.to_string()}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "every submission is accepted alike: {statuses:?}"
    );
    assert_eq!(app.items("lead").await.len(), 1);
    assert_eq!(app.items("email_lookup").await.len(), 1);
    assert_eq!(
        app.captured_events().await.len(),
        1,
        "exactly one LeadCaptured"
    );
    let store = leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table());
    let lead = store
        .find_by_email(&Email::parse("rush@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.version, 20, "every submission was applied once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filled_honeypot_looks_accepted_but_stores_nothing() {
    let app = TestApp::spawn().await;
    let response = app
        .post_form("email=bot%40spam.example&first_name=Bot&_gotcha=http%3A%2F%2Fspam.example")
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    assert!(
        body["submission_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "looks like a real answer: {body}"
    );
    assert!(app.items("lead").await.is_empty());
    assert!(app.captured_events().await.is_empty());
    let store = leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table());
    let today = chrono::Utc::now().date_naive();
    assert_eq!(
        store
            .count(capture_form::HONEYPOT_COUNTER, today)
            .await
            .unwrap(),
        1
    );

    // An empty honeypot is a person.
    let response = app.post_form("email=person%40example.com&_gotcha=").await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.items("lead").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_replays_the_first_answer_without_writing_again() {
    let app = TestApp::spawn().await;
    let send = |body: Value| {
        app.http
            .post(app.leads_url())
            .header("idempotency-key", "order-7f3a")
            .json(&body)
            .send()
    };
    let first = send(json!({"email": "idem@example.com", "company": "A"}))
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first_body: Value = first.json().await.unwrap();

    let replay = send(json!({"email": "idem@example.com", "company": "A"}))
        .await
        .unwrap();
    assert_eq!(replay.status(), 201, "the first answer");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay_body: Value = replay.json().await.unwrap();
    assert_eq!(replay_body, first_body);

    let leads = app.items("lead").await;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["version"].as_n().unwrap(), "1", "no second write");
    assert_eq!(app.items("timeline").await.len(), 1);

    let other = send(json!({"email": "idem@example.com", "company": "B"}))
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    let other: Value = other.json().await.unwrap();
    assert!(other["fields"]["Idempotency-Key"].is_string(), "{other}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_expires_after_24_hours() {
    let app = TestApp::spawn().await;
    let handler = capture_form::CaptureForm::new(
        leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table()),
        leadflow_aws::eventbridge::EventBridgePublisher::new(
            app.events.clone(),
            app.resource("LeadBus"),
        ),
        leadflow_aws::sqs::SqsEventQueue::new(app.sqs.clone(), app.resource("ScoreEventQueue")),
        capture_form::CaptureConfig::new("", "", "_gotcha", "email").unwrap(),
    );
    let request = || {
        http::Request::builder()
            .method("POST")
            .uri("/leads")
            .header("content-type", "application/json")
            .header("idempotency-key", "k-1")
            .body(lambda_http::Body::from(r#"{"email":"late@example.com"}"#))
            .unwrap()
    };
    let t0: chrono::DateTime<chrono::Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    assert_eq!(handler.handle_at(request(), t0).await.status(), 201);
    let within = handler
        .handle_at(request(), t0 + chrono::Duration::hours(23))
        .await;
    assert_eq!(within.status(), 201);
    assert_eq!(within.headers()["idempotent-replayed"], "true");
    let after = handler
        .handle_at(request(), t0 + chrono::Duration::hours(25))
        .await;
    assert_eq!(after.status(), 201);
    assert!(
        !after.headers().contains_key("idempotent-replayed"),
        "after 24 h the key is new and the known e-mail merges"
    );
    let leads = app.items("lead").await;
    assert_eq!(leads[0]["version"].as_n().unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_4xx_naming_the_problem_and_stores_nothing() {
    let app = TestApp::spawn().await;

    let malformed = app
        .http
        .post(app.leads_url())
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(malformed.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("JSON"));

    let not_utf8 = app
        .http
        .post(app.leads_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=%FF%FE%40x.de")
        .send()
        .await
        .unwrap();
    assert_eq!(not_utf8.status(), 400);

    let big = format!("email=a%40b.de&consent_text={}", "x".repeat(17 * 1024));
    let too_large = app
        .http
        .post(app.leads_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert!(too_large.json::<Value>().await.unwrap()["error"].is_string());

    let xml = app
        .http
        .post(app.leads_url())
        .header("content-type", "application/xml")
        .body("<lead/>")
        .send()
        .await
        .unwrap();
    assert_eq!(xml.status(), 415);
    let no_type = app
        .http
        .post(app.leads_url())
        .body("email=a%40b.de")
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 415);

    let invalid = app.post_json(&json!({"email": "not-an-email", "country": "Deutschland", "first_name": "x".repeat(101), "shoe_size": "44"})).await;
    assert_eq!(invalid.status(), 422);
    let invalid: Value = invalid.json().await.unwrap();
    assert_eq!(invalid["fields"]["email"], "is not a valid e-mail address");
    assert_eq!(
        invalid["fields"]["country"],
        "must be an ISO 3166-1 alpha-2 code such as DE"
    );
    assert_eq!(
        invalid["fields"]["first_name"],
        "is longer than 100 characters"
    );
    assert!(invalid["fields"]["shoe_size"].is_string());

    let missing = app.post_form("first_name=Anna").await;
    assert_eq!(missing.status(), 422);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["fields"]["email"],
        "is required"
    );

    let wrong_shape = app.post_json(&json!({"email": ["a@b.de"]})).await;
    assert_eq!(wrong_shape.status(), 422);

    let bad_key = app
        .http
        .post(app.leads_url())
        .header("idempotency-key", "x".repeat(300))
        .json(&json!({"email": "a@b.de"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 422);
    let non_ascii = app
        .http
        .post(app.leads_url())
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes("schlüssel".as_bytes()).unwrap(),
        )
        .json(&json!({"email": "a@b.de"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        non_ascii.status(),
        422,
        "a key that is not ASCII is refused, not ignored"
    );

    assert!(app.items("lead").await.is_empty());
    assert!(app.captured_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn required_fields_are_configuration() {
    let app = TestApp::spawn_with(&["RequiredFields=email,company,consent"]).await;
    let response = app.post_form("email=a%40b.de").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fields"]["company"], "is required");
    assert_eq!(body["fields"]["consent"], "is required");
    assert_eq!(
        app.post_form("email=a%40b.de&company=ACME&consent=on")
            .await
            .status(),
        201
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_redirects_to_an_allowed_thank_you_page_only() {
    let app = TestApp::spawn_with(&["RedirectAllowlist=https://www.example.com"]).await;
    let no_follow = leadflow_local::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |body: &'static str| {
        no_follow
            .post(app.leads_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let allowed = post("email=r%40example.com&_redirect=https%3A%2F%2Fwww.example.com%2Fdanke")
        .await
        .unwrap();
    assert_eq!(allowed.status(), 303);
    assert_eq!(
        allowed.headers()["location"],
        "https://www.example.com/danke"
    );

    let foreign = post("email=r2%40example.com&_redirect=https%3A%2F%2Fevil.example%2Fphish")
        .await
        .unwrap();
    assert_eq!(foreign.status(), 400, "not on the allow-list: refused");
    assert!(foreign.headers().get("location").is_none());
    let foreign: Value = foreign.json().await.unwrap();
    assert_eq!(
        foreign["fields"]["_redirect"],
        "is not on the redirect allow-list"
    );

    let invalid = post("email=broken&_redirect=https%3A%2F%2Fwww.example.com%2Fdanke")
        .await
        .unwrap();
    assert_eq!(
        invalid.status(),
        422,
        "errors are never hidden behind the redirect"
    );
    assert_eq!(
        app.items("lead").await.len(),
        1,
        "only the submission with an allowed target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_on_allowed_origins_may_call_with_fetch() {
    let app =
        TestApp::spawn_with(&["AllowedOrigins=https://www.example.com,https://shop.example.com"])
            .await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.leads_url())
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase()
        .contains("idempotency-key"));

    let denied = app
        .http
        .request(reqwest::Method::OPTIONS, app.leads_url())
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let post = app
        .http
        .post(app.leads_url())
        .header("origin", "https://www.example.com")
        .json(&json!({"email": "cors@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 201);
    assert_eq!(
        post.headers()["access-control-allow-origin"],
        "https://www.example.com"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_are_4xx() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(format!("{}/nope", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app.http.get(app.leads_url()).send().await.unwrap();
    assert!(
        r.status().is_client_error(),
        "GET /leads is not a route: {}",
        r.status()
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The size DynamoDB counts for an item: attribute names and values (close enough to compare
/// with the 400 KB item limit).
fn item_bytes(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value_bytes(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::M(m) => m.iter().map(|(k, v)| k.len() + value_bytes(v)).sum(),
            AttributeValue::L(l) => l.iter().map(value_bytes).sum(),
            AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
            _ => 1,
        }
    }
    item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn many_large_submissions_cannot_bloat_a_lead_and_it_stays_writable() {
    let app = TestApp::spawn().await;
    // 26 posts of 15 KiB of new custom fields each: about 390 KB if they all accumulated.
    for round in 0..26 {
        let mut body = String::from("email=bloat%40example.com");
        for i in 0..15 {
            body.push_str(&format!(
                "&custom_fields.p{round:02}_{i:02}={}",
                "x".repeat(1000)
            ));
        }
        assert!(body.len() < 16 * 1024);
        let response = app
            .http
            .post(app.leads_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "post {round}");
    }
    let leads = app.items("lead").await;
    assert_eq!(leads.len(), 1);
    let size = item_bytes(&leads[0]);
    assert!(
        size < 48 * 1024,
        "the lead item stays far below 400 KB: {size} bytes"
    );
    let custom = leads[0]["custom_fields"].as_m().unwrap();
    assert!(custom.len() <= leadflow_domain::capture::MAX_LEAD_CUSTOM_FIELDS);

    let id: LeadId = s(&leads[0], "id").parse().unwrap();
    let timeline = app.store().timeline(id).await.unwrap();
    let not_kept: usize = timeline
        .iter()
        .filter_map(|e| e.detail["not_kept"].as_array())
        .map(Vec::len)
        .sum();
    assert!(not_kept > 300, "what did not fit is named: {not_kept}");

    // Sales can still write the lead.
    let patch = app
        .http
        .patch(format!("{}/leads/{id}/qualification", app.base_url))
        .json(&json!({"need": "CRM for 30 reps", "by": "rep-anna"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let lead = app.store().get(id).await.unwrap().unwrap();
    assert_eq!(lead.bant.unwrap().need.as_deref(), Some("CRM for 30 reps"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_resubmission_cannot_rewrite_what_sales_or_a_crm_set() {
    let app = TestApp::spawn().await;
    let id = app
        .capture(&json!({"email": "vera@example.com", "first_name": "Vera", "phone": "+49 30 1111", "company": "Vera GmbH"}))
        .await;
    // Sales corrects the phone and the CRM the company, through the domain's precedence (the
    // way the PATCH and callback routes set contact fields).
    let store = app.store();
    let mut lead = store.get(id).await.unwrap().unwrap();
    let read_version = lead.version;
    lead.offer("phone", "+49 30 2222".into(), FieldSource::Sales);
    lead.offer("company", "Vera Holding AG".into(), FieldSource::Crm);
    lead.version += 1;
    store
        .write(&LeadWrite {
            lead,
            expected_version: Some(read_version),
            timeline: Vec::new(),
            events: Vec::new(),
        })
        .await
        .unwrap();

    // Anyone who knows the address tries to take the lead over.
    let attack = app
        .post_json(&json!({"email": "vera@example.com", "first_name": "Mallory", "phone": "+1 555 0100", "company": "Evil Inc", "job_title": "CEO"}))
        .await;
    assert_eq!(attack.status(), 201);

    let lead = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        lead.first_name.as_deref(),
        Some("Vera"),
        "a form's own value"
    );
    assert_eq!(lead.phone.as_deref(), Some("+49 30 2222"), "set by sales");
    assert_eq!(
        lead.company.as_deref(),
        Some("Vera Holding AG"),
        "set by the CRM"
    );
    assert_eq!(
        lead.job_title.as_deref(),
        Some("CEO"),
        "what was empty is filled"
    );
    assert_eq!(lead.provenance.of("phone"), FieldSource::Sales);
    assert_eq!(lead.provenance.of("company"), FieldSource::Crm);

    let timeline = store.timeline(id).await.unwrap();
    let proposal = timeline
        .iter()
        .find(|e| e.action == "change_proposed")
        .expect("a proposed change on the timeline");
    let mut fields: Vec<&str> = proposal.detail["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["company", "first_name", "phone"]);
    assert_eq!(proposal.detail["proposed"]["phone"], "+1 555 0100");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_and_known_addresses_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (status, keys, body)
    };
    let (new_status, new_keys, new_body) = answer(
        app.post_json(&json!({"email": "known@example.com", "company": "A"}))
            .await,
    )
    .await;
    let (again_status, again_keys, again_body) = answer(
        app.post_json(&json!({"email": "known@example.com", "company": "B", "job_title": "CTO"}))
            .await,
    )
    .await;
    let (bot_status, bot_keys, _) =
        answer(app.post_form("email=known%40example.com&_gotcha=x").await).await;
    assert_eq!(new_status, again_status, "the same status");
    assert_eq!(
        new_keys, again_keys,
        "the same keys: {new_body} / {again_body}"
    );
    assert_eq!((bot_status, &bot_keys), (new_status, &new_keys));
    assert_eq!(new_body["status"], again_body["status"]);
    assert!(new_body.get("lead_id").is_none() && again_body.get("lead_id").is_none());
    assert_ne!(new_body["submission_id"], again_body["submission_id"]);
    assert_eq!(app.items("lead").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_with_cr_lf_is_refused_before_anything_is_stored() {
    let app = TestApp::spawn_with(&["RedirectAllowlist=https://www.example.com"]).await;
    let no_follow = leadflow_local::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = || {
        no_follow
            .post(app.leads_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("idempotency-key", "crlf-1")
            .body("email=crlf%40example.com&_redirect=https%3A%2F%2Fwww.example.com%2Fdanke%0D%0ASet-Cookie%3A%20a%3Db")
            .send()
    };
    for attempt in 0..2 {
        let response = post().await.unwrap();
        assert_eq!(response.status(), 400, "attempt {attempt}");
        assert!(response.headers().get("location").is_none());
        assert!(response.headers().get("idempotent-replayed").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["fields"]["_redirect"],
            "must not contain control characters"
        );
    }
    assert!(app.items("lead").await.is_empty(), "nothing stored");
    assert!(app.items("timeline").await.is_empty());
    assert!(app.items("idempotency").await.is_empty(), "no answer kept");
    assert!(app.captured_events().await.is_empty());

    let unparseable = no_follow
        .post(app.leads_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=crlf%40example.com&_redirect=%2Fdanke")
        .send()
        .await
        .unwrap();
    assert_eq!(unparseable.status(), 400);
    assert!(app.items("lead").await.is_empty());
}
