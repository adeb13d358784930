//! POST /leads over real HTTP, against tables, bus and queues provisioned from template.yaml.

use std::time::Duration;

use leadflow_domain::ports::{Counters, LeadStore};
use leadflow_domain::{Email, Stage};
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
    assert_eq!(answer["status"], "created");
    let lead_id = answer["lead_id"].as_str().unwrap().parse().unwrap();

    let store = leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table());
    let lead = store
        .get(lead_id)
        .await
        .unwrap()
        .expect("the lead is stored");
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

    let events = app.captured_events().await;
    assert_eq!(events.len(), 1, "one LeadCaptured in the qualify queue");
    assert_eq!(events[0]["detail"]["lead_id"], answer["lead_id"]);
    assert_eq!(events[0]["detail"]["schema_version"], 1);
    assert_eq!(
        events[0]["detail"]["lead"]["company"],
        "Müller & Söhne GmbH"
    );
    assert!(
        app.items("outbox").await.is_empty(),
        "a published event leaves the outbox"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_email_merges_into_the_one_lead() {
    let app = TestApp::spawn().await;
    let first = app
        .post_json(
            &json!({"email": "anna@example.com", "company": "Alt GmbH", "phone": "+49 30 1234"}),
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    let again = app.post_json(&json!({"email": " ANNA@example.com ", "company": "Neu AG", "job_title": "CTO", "phone": ""})).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["lead_id"], first["lead_id"]);
    assert_eq!(again["status"], "updated");
    assert_eq!(again["changed_fields"], json!(["company", "job_title"]));

    let leads = app.items("lead").await;
    assert_eq!(leads.len(), 1);
    assert_eq!(s(&leads[0], "company"), "Neu AG");
    assert_eq!(
        s(&leads[0], "phone"),
        "+49 30 1234",
        "an empty field never erases"
    );
    let store = leadflow_aws::dynamo::DynamoStore::new(app.dynamo.clone(), app.table());
    let timeline = store
        .timeline(first["lead_id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    let actions: Vec<_> = timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["captured", "resubmitted"]);
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
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "exactly one creation: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "the rest merge: {statuses:?}"
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
    assert_eq!(body["status"], "created");
    assert!(
        body["lead_id"].as_str().is_some_and(|id| id.len() == 36),
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
    assert_eq!(replay.status(), 201, "the first answer, not a 200 merge");
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
    assert_eq!(
        after.status(),
        200,
        "after 24 h the key is new and the known e-mail merges"
    );
    assert!(!after.headers().contains_key("idempotent-replayed"));
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
    crate::support::http_client();
    let no_follow = reqwest::Client::builder()
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
    assert_eq!(foreign.status(), 201, "not on the allow-list: plain JSON");
    assert!(foreign.headers().get("location").is_none());

    let invalid = post("email=broken&_redirect=https%3A%2F%2Fwww.example.com%2Fdanke")
        .await
        .unwrap();
    assert_eq!(
        invalid.status(),
        422,
        "errors are never hidden behind the redirect"
    );
    assert_eq!(app.items("lead").await.len(), 2);
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
