//! What landing pages call, and nothing else: `POST /leads` captures a lead from a form
//! (urlencoded, no JavaScript needed) or an API client (JSON), stores it exactly once and
//! announces `LeadCaptured`; `POST /events` queues behavioural events for scoring. Both are
//! public. The sales and read routes are the `lead-api` function's.

pub mod decode;

use std::collections::BTreeMap;
use std::convert::Infallible;

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::sqs::SqsEventQueue;
use leadflow_aws::Clients;
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::ports::{
    Counters, EventPublisher, IdempotencyBegin, IdempotencyStore, LeadStore, Outbox,
    TrackedEventQueue,
};
use leadflow_domain::submission::RawSubmission;
use leadflow_domain::tracking::MAX_EVENTS_PER_BATCH;
use leadflow_domain::{Decision, Lead, LeadId, SubmissionRules, TrackedEvent};
use leadflow_lambda::config::{self, ConfigError, Env};
use leadflow_lambda::http::{header_str, json_request, Answer};
use leadflow_lambda::lead_update::upsert_by_email;
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::HttpFunction;
use leadflow_lambda::wiring;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::decode::{body_kind, decode, DecodeError, MAX_BODY_BYTES};

/// A batch of 100 events with long URLs and properties fits; SQS takes 256 KiB per message.
pub const MAX_EVENTS_BODY_BYTES: usize = 128 * 1024;

/// The counter that honeypot hits go to (per UTC day).
pub const HONEYPOT_COUNTER: &str = "honeypot_hits";
/// The field a form names its thank-you page in.
pub const REDIRECT_FIELD: &str = "_redirect";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// What the function is told by its environment (template.yaml).
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Origins allowed to call from a browser (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Origins (`https://example.com`) a `_redirect` may point to.
    pub redirect_allowlist: Vec<String>,
    pub honeypot_field: String,
    pub rules: SubmissionRules,
}

impl CaptureConfig {
    pub fn new(
        allowed_origins: &str,
        redirect_allowlist: &str,
        honeypot_field: &str,
        required_fields: &str,
    ) -> Result<Self, ConfigError> {
        let honeypot_field = honeypot_field.trim().to_owned();
        let mut rules = SubmissionRules::with_required(required_fields).map_err(|reason| {
            ConfigError::Invalid {
                name: "REQUIRED_FIELDS",
                reason,
            }
        })?;
        rules.control_fields.insert(honeypot_field.clone());
        rules.control_fields.insert(REDIRECT_FIELD.to_owned());
        Ok(Self {
            allowed_origins: config::list(allowed_origins)
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            redirect_allowlist: config::list(redirect_allowlist)
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            honeypot_field,
            rules,
        })
    }

    /// `ALLOWED_ORIGINS`, `REDIRECT_ALLOWLIST`, `HONEYPOT_FIELD` (default `_gotcha`),
    /// `REQUIRED_FIELDS` (default `email`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::new(
            &env.optional("ALLOWED_ORIGINS").unwrap_or_default(),
            &env.optional("REDIRECT_ALLOWLIST").unwrap_or_default(),
            &env.optional("HONEYPOT_FIELD")
                .unwrap_or_else(|| "_gotcha".into()),
            &env.optional("REQUIRED_FIELDS")
                .unwrap_or_else(|| "email".into()),
        )
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// A redirect target is allowed when its origin is on the allow-list exactly.
    fn redirect_allowed(&self, target: &str) -> bool {
        let Ok(url) = url::Url::parse(target) else {
            return false;
        };
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let origin = url.origin().ascii_serialization();
        self.redirect_allowlist
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&origin))
    }
}

/// The capture handler, generic over its store, publisher and queue so tests and `cargo dev`
/// run the same code as Lambda.
pub struct CaptureForm<S, P, Q> {
    store: S,
    publisher: P,
    queue: Q,
    config: CaptureConfig,
}

impl CaptureForm<DynamoStore, EventBridgePublisher, SqsEventQueue> {
    /// The table, the bus, the scoring queue (`SCORE_EVENT_QUEUE_URL`) and the form settings.
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::new(
            wiring::store(aws, env)?,
            wiring::publisher(aws, env)?,
            SqsEventQueue::new(aws.sqs(), env.required("SCORE_EVENT_QUEUE_URL")?),
            CaptureConfig::from_env(env)?,
        ))
    }
}

/// The paths this function serves (template.yaml routes them here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Leads,
    Events,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        match path.trim_end_matches('/') {
            "/leads" => Some(Route::Leads),
            "/events" => Some(Route::Events),
            _ => None,
        }
    }

    fn allowed_methods(&self) -> &'static str {
        "POST, OPTIONS"
    }
}

fn client_context(req: &Request) -> SubmissionContext {
    let ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    };
    SubmissionContext {
        ip,
        user_agent: header_str(req.headers(), "user-agent").map(str::to_owned),
    }
}

/// Counted and answered like a success, so a bot learns nothing.
fn fake_acceptance() -> serde_json::Value {
    json!({ "lead_id": LeadId::new_at(Utc::now()), "status": "created" })
}

impl<S, P, Q> HttpFunction for CaptureForm<S, P, Q>
where
    S: LeadStore + Outbox + IdempotencyStore + Counters,
    P: EventPublisher,
    Q: TrackedEventQueue,
{
    async fn handle(&self, req: Request) -> Response<Body> {
        self.handle_at(req, Utc::now()).await
    }
}

impl<S, P, Q> CaptureForm<S, P, Q>
where
    S: LeadStore + Outbox + IdempotencyStore + Counters,
    P: EventPublisher,
    Q: TrackedEventQueue,
{
    pub fn new(store: S, publisher: P, queue: Q, config: CaptureConfig) -> Self {
        Self {
            store,
            publisher,
            queue,
            config,
        }
    }

    /// Handles one request as if it arrived at `now`.
    pub async fn handle_at(&self, req: Request, now: DateTime<Utc>) -> Response<Body> {
        let origin = header_str(req.headers(), "origin").map(str::to_owned);
        let cors_origin = origin.filter(|o| self.config.origin_allowed(o));
        let answer = match Route::of(req.uri().path()) {
            None => Answer::error(StatusCode::NOT_FOUND, "no such route"),
            Some(route) => match (req.method(), route) {
                (&Method::OPTIONS, _) => self.preflight(&req, &route, cors_origin.is_some()),
                (&Method::POST, Route::Leads) => self.post_lead(&req, now).await,
                (&Method::POST, Route::Events) => self.post_events(&req, now).await,
                _ => {
                    let mut a = Answer::error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        format!("allowed: {}", route.allowed_methods()),
                    );
                    a.headers
                        .push(("allow".into(), route.allowed_methods().into()));
                    a
                }
            },
        };
        let mut response = answer.into_response();
        if let Some(origin) = cors_origin {
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&origin) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Location, Idempotent-Replayed"),
            );
        }
        response
    }

    fn preflight(&self, req: &Request, route: &Route, origin_allowed: bool) -> Answer {
        if !origin_allowed {
            return Answer::error(StatusCode::FORBIDDEN, "this origin may not call this API");
        }
        let method = header_str(req.headers(), "access-control-request-method").unwrap_or("POST");
        let allowed = route.allowed_methods();
        if method.eq_ignore_ascii_case("OPTIONS")
            || !allowed.split(", ").any(|m| m.eq_ignore_ascii_case(method))
        {
            return Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("allowed: {allowed}"),
            );
        }
        let mut a = Answer::json(StatusCode::NO_CONTENT, serde_json::Value::Null);
        a.headers.extend([
            ("access-control-allow-methods".into(), allowed.into()),
            (
                "access-control-allow-headers".into(),
                "Content-Type, Idempotency-Key".into(),
            ),
            ("access-control-max-age".into(), "600".into()),
        ]);
        a
    }

    /// `POST /events`: a batch of behavioural events, each validated on its own; the valid ones
    /// are queued for scoring. Answers 202 with the fate of every event.
    async fn post_events(&self, req: &Request, now: DateTime<Utc>) -> Answer {
        let value = match json_request(req, MAX_EVENTS_BODY_BYTES) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let items = match value.get("events").and_then(|e| e.as_array()) {
            Some(items) if !items.is_empty() && items.len() <= MAX_EVENTS_PER_BATCH => items,
            _ => {
                return Answer::fields(BTreeMap::from([(
                    "events".into(),
                    format!("must be a list of 1 to {MAX_EVENTS_PER_BATCH} events"),
                )]))
            }
        };
        let mut accepted = Vec::new();
        let mut results = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let event_id = item.get("event_id").cloned().unwrap_or_default();
            match TrackedEvent::parse(item, now) {
                Ok(event) => {
                    // A repeated event_id within the batch is the same event.
                    if !accepted.iter().any(|a: &TrackedEvent| a.event_id == event.event_id) {
                        accepted.push(event);
                    }
                    results.push(json!({ "index": index, "event_id": event_id, "status": "accepted" }));
                }
                Err(errors) => {
                    results.push(json!({ "index": index, "event_id": event_id, "status": "rejected", "errors": errors }))
                }
            }
        }
        if let Err(err) = self.queue.enqueue(&accepted).await {
            tracing::error!(error = %err, "tracked events not queued");
            let mut a = Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "events cannot be queued right now; retry the batch (event ids make that safe)",
            );
            a.headers.push(("retry-after".into(), "1".into()));
            return a;
        }
        let rejected = results.iter().filter(|r| r["status"] == "rejected").count();
        tracing::info!(
            accepted = items.len() - rejected,
            rejected,
            "events received"
        );
        Answer::json(
            StatusCode::ACCEPTED,
            json!({ "accepted": items.len() - rejected, "rejected": rejected, "results": results }),
        )
    }

    async fn post_lead(&self, req: &Request, now: DateTime<Utc>) -> Answer {
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return Answer::too_large(MAX_BODY_BYTES);
        }
        let content_type = header_str(req.headers(), "content-type");
        let raw = match body_kind(content_type).and_then(|kind| decode(kind, body)) {
            Ok(raw) => raw,
            Err(e @ DecodeError::UnsupportedMediaType(_)) => {
                return Answer::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
            }
            Err(e @ DecodeError::Malformed(_)) => {
                return Answer::error(StatusCode::BAD_REQUEST, e.to_string())
            }
            Err(DecodeError::Fields(errors)) => return Answer::fields(errors),
        };
        let field = |name: &str| {
            raw.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.trim().is_empty())
        };
        let redirect = field(REDIRECT_FIELD)
            .filter(|t| self.config.redirect_allowed(t))
            .map(str::to_owned);
        let respond = |answer: Answer| match (&redirect, answer.status) {
            (Some(target), StatusCode::OK | StatusCode::CREATED) => {
                let mut a = answer;
                a.status = StatusCode::SEE_OTHER;
                a.headers.push(("location".into(), target.clone()));
                a
            }
            _ => answer,
        };

        if field(&self.config.honeypot_field).is_some() {
            if let Err(err) = self.store.increment(HONEYPOT_COUNTER, now).await {
                tracing::warn!(error = %err, "honeypot counter not written");
            }
            tracing::info!(honeypot = true, "honeypot filled; nothing stored");
            return respond(Answer::json(StatusCode::CREATED, fake_acceptance()));
        }

        // Read as bytes: a key that is not ASCII must be refused, not taken for no key at all.
        let key = match req.headers().get(IDEMPOTENCY_HEADER).map(|v| v.as_bytes()) {
            None => None,
            Some(k) if (1..=255).contains(&k.len()) && k.iter().all(u8::is_ascii_graphic) => {
                Some(String::from_utf8_lossy(k).into_owned())
            }
            Some(_) => {
                return Answer::fields(BTreeMap::from([(
                    "Idempotency-Key".into(),
                    "must be 1 to 255 visible ASCII characters".into(),
                )]))
            }
        };
        let Some(key) = key else {
            return respond(self.capture(&raw, req, now).await);
        };
        // Form clients' keys live apart from leadflow's own idempotency records (CRM deliveries
        // and callbacks), so a client cannot block those by guessing their keys.
        let key = format!("form#{key}");
        let fingerprint = {
            let mut h = Sha256::new();
            h.update(content_type.unwrap_or_default().as_bytes());
            h.update([0]);
            h.update(body);
            hex::encode(h.finalize())
        };
        match self.store.begin(&key, &fingerprint, now).await {
            Err(err) => Answer::store_failed(&err),
            Ok(IdempotencyBegin::Replay(stored)) => {
                Answer::from_stored(stored, "idempotent-replayed")
            }
            Ok(IdempotencyBegin::InProgress) => {
                let mut a = Answer::error(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still in progress",
                );
                a.headers.push(("retry-after".into(), "1".into()));
                a
            }
            Ok(IdempotencyBegin::Mismatch) => Answer::fields(BTreeMap::from([(
                "Idempotency-Key".into(),
                "was used before with a different request body".into(),
            )])),
            Ok(IdempotencyBegin::Started) => {
                let answer = respond(self.capture(&raw, req, now).await);
                let kept = if answer.status.is_server_error() {
                    self.store.release(&key).await
                } else {
                    self.store.finish(&key, &answer.stored(), now).await
                };
                if let Err(err) = kept {
                    tracing::warn!(error = %err, "idempotency record not updated");
                }
                answer
            }
        }
    }

    async fn capture(&self, raw: &RawSubmission, req: &Request, now: DateTime<Utc>) -> Answer {
        let submission = match self.config.rules.validate(raw) {
            Ok(s) => s,
            Err(errors) => return Answer::fields(errors),
        };
        let ctx = client_context(req);
        let email = submission.email.clone();
        // A new e-mail becomes a lead; a known one is merged into its lead. Concurrent
        // submissions of one e-mail are settled by the store's conditions.
        let stored = upsert_by_email(&self.store, &email, now, |found: Option<Lead>| {
            Ok::<_, Infallible>(match found {
                None => {
                    let c = Lead::capture(LeadId::new_at(now), submission.clone(), &ctx, now);
                    let body = json!({ "lead_id": c.lead.id, "status": "created" });
                    Decision::store(c.lead, c.change, (StatusCode::CREATED, body))
                }
                Some(mut lead) => {
                    let merged = lead.merge(submission.clone(), &ctx, now);
                    let body = json!({ "lead_id": lead.id, "status": "updated", "changed_fields": merged.changed_fields });
                    Decision::store(lead, merged.change, (StatusCode::OK, body))
                }
            })
        })
        .await;
        match stored {
            Ok(updated) => {
                let (status, body) = updated.outcome;
                if let Some(lead) = &updated.stored {
                    match status {
                        StatusCode::CREATED => tracing::info!(lead_id = %lead.id, "lead captured"),
                        _ => {
                            tracing::info!(lead_id = %lead.id, changed = body["changed_fields"].as_array().map_or(0, Vec::len), "lead resubmitted")
                        }
                    }
                }
                deliver(&self.store, &self.publisher, &updated.events).await;
                Answer::json(status, body)
            }
            Err(e) => Answer::update_failed(
                e,
                |never| match never {},
                || Answer::internal(&"a lead vanished while it was captured"),
            ),
        }
    }
}
