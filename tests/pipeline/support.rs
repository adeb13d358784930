//! Test harness: one emulator per test binary (started on a free port, installed first if
//! needed), and for each test its own stack of resources provisioned from template.yaml, its
//! own HTTP server with the real handlers, and SDK clients.

use std::collections::HashMap;
use std::sync::OnceLock;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::ports::{LeadStore, LeadWrite};
use leadflow_domain::scoring::{Grade, Points, ScoreBand, Temperature};
use leadflow_domain::{LeadId, Qualification, Stage, SubmissionRules};
use leadflow_local::{Emulator, LocalStack};
use serde_json::Value;

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The emulator all tests of this binary share: `AWS_ENDPOINT_URL` if set, else a moto server
/// started here on a free port. It exits with this process.
pub fn emulator_endpoint() -> &'static str {
    EMULATOR
        .get_or_init(|| {
            if std::env::var_os("TEST_LOG").is_some() {
                let _ = tracing_subscriber_init();
            }
            Emulator::from_env_or_start("127.0.0.1", 0).expect("the emulator starts")
        })
        .endpoint()
}

fn tracing_subscriber_init() -> Result<(), ()> {
    leadflow_lambda::init_tracing();
    Ok(())
}

/// The per-client rate limits of every test stack unless the test sets its own.
pub const TEST_RATE_LIMITS: [&str; 3] = [
    "LeadsRateLimit=1000/s burst 1000",
    "EventsRateLimit=1000/s burst 1000",
    "CrmCallbackRateLimit=1000/s burst 1000",
];

/// The HTTP API's throttles of every test stack unless the test sets its own: the local server
/// enforces the template's (50/s, burst 20 on `POST /events`), which bursts of test requests
/// would exceed. These are the account quota's, the most API Gateway admits.
pub const TEST_THROTTLES: [&str; 4] = [
    "ThrottleRateLimit=10000",
    "ThrottleBurstLimit=5000",
    "EventsThrottleRateLimit=10000",
    "EventsThrottleBurstLimit=5000",
];

pub struct TestApp {
    pub stack: LocalStack,
    pub base_url: String,
    pub http: reqwest::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    server: tokio::task::JoinHandle<()>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        for p in &self.pollers {
            p.abort();
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// A fresh stack (template parameters `params`), served on a free port.
    pub async fn spawn_with(params: &[&str]) -> Self {
        let endpoint = tokio::task::spawn_blocking(emulator_endpoint)
            .await
            .expect("emulator thread");
        let name = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        // Tests post far faster than any visitor: the template's per-client limits and API
        // throttles would refuse them. A test of the limits names its own, which come later and
        // win.
        let params: Vec<String> = TEST_RATE_LIMITS
            .iter()
            .chain(&TEST_THROTTLES)
            .chain(params)
            .map(|p| p.to_string())
            .collect();
        let stack = LocalStack::provision(endpoint, &name, &params, false)
            .await
            .expect("template.yaml provisions");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(stack.router().serve(listener));
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
        let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk);
        let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
        Self {
            stack,
            base_url,
            http: http_client(),
            sqs,
            dynamo,
            events,
            server,
            pollers: Vec::new(),
        }
    }

    /// A stack that runs like `cargo dev`: config/leadflow.yaml pushed, and the named
    /// queue-driven functions polling their queues (the others' queues keep what reaches them,
    /// for the test to look at). Configuration changes apply at once.
    pub async fn spawn_running(binaries: &[&str]) -> Self {
        let app = Self::spawn_with(&["ConfigCacheSeconds=0"]).await;
        leadflow_local::config::ensure_active(&app.stack)
            .await
            .expect("config/leadflow.yaml is pushed");
        app.run(binaries)
    }

    /// Starts polling the queues of the named queue-driven functions.
    pub fn run(mut self, binaries: &[&str]) -> Self {
        let app = &mut self;
        let queues: Vec<String> = binaries
            .iter()
            .flat_map(|b| {
                app.stack
                    .function(b)
                    .unwrap_or_else(|| {
                        panic!(
                            "{b} is not a function of the template: {:?}",
                            app.stack.functions.keys()
                        )
                    })
                    .spec
                    .queues
                    .clone()
            })
            .map(|q| q.queue_logical_id)
            .collect();
        app.pollers = app
            .stack
            .pollers()
            .into_iter()
            .filter(|p| queues.contains(&p.source.queue_logical_id))
            .map(|p| tokio::spawn(p.run()))
            .collect();
        self
    }

    /// Pushes a configuration (YAML) and makes it active.
    pub async fn push_config(&self, yaml: &str) {
        use leadflow_domain::ports::ConfigStore;
        self.store()
            .push(yaml, Some("test"), chrono::Utc::now())
            .await
            .expect("a valid configuration");
    }

    pub fn store(&self) -> leadflow_aws::dynamo::DynamoStore {
        leadflow_aws::dynamo::DynamoStore::new(self.dynamo.clone(), self.table())
    }

    pub async fn post_events(&self, events: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/events", self.base_url))
            .json(&serde_json::json!({ "events": events }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["rejected"], 0, "{body}");
        body
    }

    pub fn resource(&self, logical_id: &str) -> &str {
        self.stack
            .manifest
            .resource(logical_id)
            .unwrap_or_else(|| panic!("template.yaml declares {logical_id}"))
    }

    pub fn table(&self) -> &str {
        self.resource("LeadsTable")
    }

    pub fn leads_url(&self) -> String {
        format!("{}/leads", self.base_url)
    }

    pub async fn post_form(&self, body: &'static str) -> reqwest::Response {
        self.http
            .post(self.leads_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Captures a lead (201) and gives its id. The public answer never names the lead, so the
    /// id is looked up by the e-mail, as sales tools would.
    pub async fn capture(&self, body: &Value) -> leadflow_domain::LeadId {
        let response = self.post_json(body).await;
        assert_eq!(response.status(), 201, "a new lead");
        let email = body["email"].as_str().expect("an e-mail in the body");
        let email = leadflow_domain::Email::parse(email).expect("a valid e-mail");
        leadflow_domain::ports::LeadStore::find_by_email(&self.store(), &email)
            .await
            .expect("store")
            .expect("the lead is stored")
            .id
    }

    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.leads_url())
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Every message now on the queue (waits briefly for stragglers), removed from it.
    pub async fn drain(&self, queue_logical_id: &str) -> Vec<Value> {
        let url = self.resource(queue_logical_id).to_owned();
        let mut out = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            if got.messages().is_empty() {
                empty_polls += 1;
                continue;
            }
            for m in got.messages() {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).expect("JSON message"));
                self.sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        out
    }

    /// The LeadCaptured events that reached the qualify queue.
    pub async fn captured_events(&self) -> Vec<Value> {
        let all = self.drain("QualifyQueue").await;
        assert!(
            all.iter().all(|e| e["source"] == "leadflow"),
            "only leadflow events: {all:?}"
        );
        all.into_iter()
            .filter(|e| e["detail-type"] == "LeadCaptured")
            .collect()
    }

    /// Items of one entity type (`lead`, `timeline`, `outbox`, ...), by a full scan.
    pub async fn items(&self, entity: &str) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamo
                .scan()
                .table_name(self.table())
                .filter_expression("entity = :e")
                .expression_attribute_values(":e", AttributeValue::S(entity.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return items,
            }
        }
    }
}

pub fn s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_default()
}

/// Waits until `check` holds, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// An SQS batch of one message, as the event source mapping hands it to a function.
pub fn sqs_event(
    message_id: &str,
    body: impl Into<String>,
) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
    m.message_id = Some(message_id.to_owned());
    m.body = Some(body.into());
    event.records.push(m);
    event
}

/// reqwest on the workspace's rustls (`leadflow_local::http_client_builder`).
pub fn http_client() -> reqwest::Client {
    leadflow_local::http_client_builder()
        .build()
        .expect("a client")
}

/// A lead at MQL, as qualify leaves it.
pub async fn mql(
    app: &TestApp,
    email: &str,
    fields: &[(&str, &str)],
    grade: Grade,
    temperature: Temperature,
) -> LeadId {
    let mut raw: Vec<(String, String)> = vec![("email".into(), email.into())];
    raw.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let now = Utc::now();
    let mut lead: leadflow_domain::Lead = leadflow_domain::Lead::capture(
        LeadId::new_at(now),
        SubmissionRules::default().validate(&raw).unwrap(),
        &SubmissionContext::default(),
        now,
    )
    .lead;
    lead.stage = Stage::Mql;
    lead.qualification = Some(Qualification {
        score: Points::from_cents(7000),
        band: ScoreBand::Mql,
        grade,
        temperature,
        product: None,
        config_version: 1,
        at: now,
    });
    app.store()
        .write(&LeadWrite {
            lead: lead.clone(),
            expected_version: None,
            timeline: vec![],
            events: vec![],
        })
        .await
        .unwrap();
    lead.id
}

/// A CRM's call of `POST /crm/events`, signed with `secret` as webhook `id` at `ts`.
pub async fn crm_callback(
    app: &TestApp,
    secret: &str,
    id: &str,
    ts: i64,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let body = body.to_string();
    let signature = leadflow_domain::webhook::WebhookSecret::parse(secret)
        .unwrap()
        .sign(id, ts, body.as_bytes());
    let r = app
        .http
        .post(format!("{}/crm/events", app.base_url))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

/// The `scoring:` section of config/leadflow.yaml, for tests that write their own routing.
pub fn example_scoring() -> String {
    let example = std::fs::read_to_string(leadflow_local::config::example_path()).unwrap();
    example[..example.find("\nrouting:").expect("the example routes")].to_owned()
}
