//! What landing pages call, and nothing else: `POST /leads` captures a lead from a form
//! (urlencoded, no JavaScript needed) or an API client (JSON), stores it exactly once and
//! announces `LeadCaptured`; `POST /events` queues behavioural events for scoring. Both are
//! public, so an event names a lead only by the visitor token a capture answer issued
//! (`visitor_tokens`). The sales and read routes are the `lead-api` function's.

pub mod decode;
pub mod visitor_tokens;

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
    RateLimitStore, TrackedEventQueue,
};
use leadflow_domain::provenance::FieldSource;
use leadflow_domain::rate_limit::{ClientKey, RateLimit, Verdict};
use leadflow_domain::submission::RawSubmission;
use leadflow_domain::tracking::{Batch, Reporter};
use leadflow_domain::{Change, Decision, Lead, LeadId, SubmissionRules};
use leadflow_lambda::config::{self, ConfigError, Env};
use leadflow_lambda::http::{header_str, json_request, Answer};
use leadflow_lambda::lead_update::upsert_by_email;
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::HttpFunction;
use leadflow_lambda::wiring;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::decode::{body_kind, decode, DecodeError, MAX_BODY_BYTES};
use crate::visitor_tokens::VisitorTokens;

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
    /// Per-client limits of `POST /leads` and `POST /events` (none unless set).
    pub limits: ClientLimits,
}

/// The per-client rate limits of this function's routes (`None`: off), and the key that client
/// addresses are hashed with before they name a bucket.
#[derive(Clone, Default)]
pub struct ClientLimits {
    pub leads: Option<RateLimit>,
    pub events: Option<RateLimit>,
    pub hash_key: Vec<u8>,
}

impl std::fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimits")
            .field("leads", &self.leads)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl ClientLimits {
    /// `RATE_LIMIT_LEADS` and `RATE_LIMIT_EVENTS` (`off`, or e.g. `10/min burst 20`; both
    /// required, template.yaml sets them), and `RATE_LIMIT_KEY` when either is on.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let limit = |name: &'static str| {
            RateLimit::parse(&env.required(name)?).map_err(|e| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            })
        };
        let (leads, events) = (limit("RATE_LIMIT_LEADS")?, limit("RATE_LIMIT_EVENTS")?);
        let hash_key = match (leads, events) {
            (None, None) => Vec::new(),
            _ => env.required("RATE_LIMIT_KEY")?.into_bytes(),
        };
        Ok(Self {
            leads,
            events,
            hash_key,
        })
    }
}

/// 429 with when to come back, in the header and the body.
fn too_many_requests(retry_after: std::time::Duration) -> Answer {
    let secs = Verdict::retry_after_secs(retry_after);
    let mut a = Answer::json(
        StatusCode::TOO_MANY_REQUESTS,
        json!({ "error": "too many requests from this client; retry later", "retry_after_seconds": secs }),
    );
    a.headers.push(("retry-after".into(), secs.to_string()));
    a
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
            limits: ClientLimits::default(),
        })
    }

    /// `ALLOWED_ORIGINS`, `REDIRECT_ALLOWLIST`, `HONEYPOT_FIELD` (default `_gotcha`),
    /// `REQUIRED_FIELDS` (default `email`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut config = Self::new(
            &env.optional("ALLOWED_ORIGINS").unwrap_or_default(),
            &env.optional("REDIRECT_ALLOWLIST").unwrap_or_default(),
            &env.optional("HONEYPOT_FIELD")
                .unwrap_or_else(|| "_gotcha".into()),
            &env.optional("REQUIRED_FIELDS")
                .unwrap_or_else(|| "email".into()),
        )?;
        config.limits = ClientLimits::from_env(env)?;
        Ok(config)
    }

    /// The form a request comes from, as far as a bucket is concerned: its `Origin` when that
    /// is one of the origins configured by name. Any other value is the client's to choose, and
    /// a bucket per chosen value would be no limit at all.
    fn named_form<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        origin.filter(|o| {
            self.allowed_origins
                .iter()
                .chain(&self.redirect_allowlist)
                .any(|a| a != "*" && a.eq_ignore_ascii_case(o))
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The `Location` for a `_redirect`: a clean absolute http(s) URL whose origin is on the
    /// allow-list exactly, as the URL parser writes it; otherwise why not. Control characters
    /// are refused before parsing, because the parser would silently drop CR/LF/TAB and the
    /// raw value would then pass the allow-list yet fail as a header.
    pub fn redirect_target(&self, target: &str) -> Result<String, &'static str> {
        if target.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        let url = url::Url::parse(target.trim())
            .map_err(|_| "must be an absolute http(s) URL on the redirect allow-list")?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err("must be an absolute http(s) URL on the redirect allow-list");
        }
        let origin = url.origin().ascii_serialization();
        if !self
            .redirect_allowlist
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&origin))
        {
            return Err("is not on the redirect allow-list");
        }
        Ok(url.into())
    }
}

/// The capture handler, generic over its store, publisher and queue so tests and `cargo dev`
/// run the same code as Lambda.
pub struct CaptureForm<S, P, Q> {
    store: S,
    publisher: P,
    queue: Q,
    config: CaptureConfig,
    /// Signs the visitor tokens of capture answers and checks those of `POST /events`.
    tokens: VisitorTokens,
}

impl CaptureForm<DynamoStore, EventBridgePublisher, SqsEventQueue> {
    /// The table, the bus, the scoring queue (`SCORE_EVENT_QUEUE_URL`) and the form settings.
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::new(
            wiring::store(aws, env)?,
            wiring::publisher(aws, env)?,
            SqsEventQueue::new(aws.sqs(), env.required("SCORE_EVENT_QUEUE_URL")?),
            CaptureConfig::from_env(env)?,
        )
        .with_visitor_tokens(VisitorTokens::from_env(aws, env)?))
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

/// The answer to every accepted submission, new e-mail or known (docs/openapi.yaml): the same
/// status and keys, and no lead id, so the answer does not tell whether an address is known.
fn acceptance(submission_id: Uuid) -> serde_json::Value {
    json!({ "status": "accepted", "submission_id": submission_id })
}

/// What became of a submission, for the log only (never for the answer).
enum Captured {
    New,
    Again {
        added: usize,
        proposed: usize,
        not_kept: usize,
        recorded: bool,
    },
}

/// Counted and answered like a success, so a bot learns nothing.
fn fake_acceptance() -> serde_json::Value {
    acceptance(Uuid::new_v4())
}

impl<S, P, Q> HttpFunction for CaptureForm<S, P, Q>
where
    S: LeadStore + Outbox + IdempotencyStore + Counters + RateLimitStore,
    P: EventPublisher,
    Q: TrackedEventQueue,
{
    async fn handle(&self, req: Request) -> Response<Body> {
        self.handle_at(req, Utc::now()).await
    }
}

impl<S, P, Q> CaptureForm<S, P, Q>
where
    S: LeadStore + Outbox + IdempotencyStore + Counters + RateLimitStore,
    P: EventPublisher,
    Q: TrackedEventQueue,
{
    pub fn new(store: S, publisher: P, queue: Q, config: CaptureConfig) -> Self {
        Self {
            store,
            publisher,
            queue,
            config,
            tokens: VisitorTokens::none(),
        }
    }

    /// Issues and checks visitor tokens with this key (without: none issued, none accepted).
    pub fn with_visitor_tokens(mut self, tokens: VisitorTokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// Handles one request as if it arrived at `now`.
    pub async fn handle_at(&self, req: Request, now: DateTime<Utc>) -> Response<Body> {
        let origin = header_str(req.headers(), "origin").map(str::to_owned);
        let cors_origin = origin.filter(|o| self.config.origin_allowed(o));
        // First of all: a refused request reads and stores nothing but its bucket.
        let refused = self.over_limit(&req, now).await;
        let answer = match (Route::of(req.uri().path()), refused) {
            (None, _) => Answer::error(StatusCode::NOT_FOUND, "no such route"),
            (Some(_), Some(refused)) => refused,
            (Some(route), None) => match (req.method(), route) {
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

    /// The 429 answer when the client has spent its bucket for this route and form. A
    /// preflight is not counted (it stores nothing). When the buckets cannot be reached the
    /// request goes through: a lost lead is worse than a burst let past (the API's throttle
    /// still holds).
    async fn over_limit(&self, req: &Request, now: DateTime<Utc>) -> Option<Answer> {
        if req.method() != Method::POST {
            return None;
        }
        let limits = &self.config.limits;
        let (name, limit) = match Route::of(req.uri().path())? {
            Route::Leads => ("leads", limits.leads?),
            Route::Events => ("events", limits.events?),
        };
        let client = client_context(req).ip.unwrap_or_default();
        let form = self.config.named_form(header_str(req.headers(), "origin"));
        let key = ClientKey::new(&limits.hash_key, name, &client, form);
        match self.store.take_token(&key, &limit, now).await {
            Ok(Verdict::Admit(_)) => None,
            Ok(Verdict::Refuse { retry_after }) => {
                tracing::info!(route = name, "client over its rate limit; refused");
                Some(too_many_requests(retry_after))
            }
            Err(err) => {
                tracing::warn!(error = %err, route = name, "rate limit not checked; request let through");
                None
            }
        }
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
    /// are queued for scoring. Answers 202 with the fate of every event. An event names a lead
    /// only through its `visitor_token`; a bare `lead_id` or `email` names no one.
    async fn post_events(&self, req: &Request, now: DateTime<Utc>) -> Answer {
        let value = match json_request(req, MAX_EVENTS_BODY_BYTES) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        // The key is read only when a token needs checking: anonymous tracking never waits
        // for it.
        let key = if Batch::has_tokens(&value) {
            match self.tokens.key().await {
                Ok(key) => Some(key),
                Err(err) => {
                    tracing::error!(error = %err, "visitor tokens cannot be checked");
                    let mut a = Answer::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "visitor tokens cannot be checked right now; retry the batch (event ids make that safe)",
                    );
                    a.headers.push(("retry-after".into(), "1".into()));
                    return a;
                }
            }
        } else {
            None
        };
        let batch = match Batch::parse(&value, Reporter::Page { key: key.as_ref() }, now) {
            Ok(batch) => batch,
            Err(errors) => return Answer::fields(errors),
        };
        if let Err(err) = self.queue.enqueue(&batch.accepted).await {
            return Answer::events_not_queued(&err);
        }
        let attributed = batch
            .accepted
            .iter()
            .filter(|e| e.identity.lead_id.is_some())
            .count();
        tracing::info!(
            accepted = batch.results.len() - batch.rejected,
            rejected = batch.rejected,
            attributed,
            "events received"
        );
        Answer::json(StatusCode::ACCEPTED, batch.answer())
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
        // Checked before anything is stored: a bad target is the caller's error (400), never a
        // 500 after the lead was written, and never kept as an idempotent answer.
        let redirect = match field(REDIRECT_FIELD).map(|t| self.config.redirect_target(t)) {
            None => None,
            Some(Ok(target)) => Some(target),
            Some(Err(reason)) => {
                return Answer::json(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "the redirect target is not allowed",
                        "fields": { REDIRECT_FIELD: reason },
                    }),
                )
            }
        };
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
            let answer = self.tokens.add_to(fake_acceptance(), None, now).await;
            return respond(Answer::json(StatusCode::CREATED, answer));
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
        // Names this submission on the lead's timeline; the answer gives it instead of the lead
        // id, so the answer cannot tell a known address from a new one.
        let submission_id = Uuid::new_v4();
        let stamp = |mut change: Change| {
            for entry in &mut change.timeline {
                entry.detail["submission_id"] = json!(submission_id);
            }
            change
        };
        // A new e-mail becomes a lead; a known one is merged into its lead by the field
        // precedence (a public form is the lowest source). Concurrent submissions of one
        // e-mail are settled by the store's conditions.
        let stored = upsert_by_email(&self.store, &email, now, |found: Option<Lead>| {
            Ok::<_, Infallible>(match found {
                None => {
                    let c = Lead::capture(LeadId::new_at(now), submission.clone(), &ctx, now);
                    Decision::store(c.lead, stamp(c.change), Captured::New)
                }
                Some(mut lead) => {
                    let merged = lead.merge(submission.clone(), FieldSource::Form, &ctx, now);
                    let outcome = Captured::Again {
                        added: merged.added_fields.len(),
                        proposed: merged.proposed_fields.len(),
                        not_kept: merged.not_kept.len(),
                        recorded: merged.recorded,
                    };
                    Decision::store(lead, stamp(merged.change), outcome)
                }
            })
        })
        .await;
        match stored {
            Ok(updated) => {
                // Only the submission that created the lead gets a token naming it.
                let created = updated
                    .stored
                    .as_ref()
                    .filter(|_| matches!(updated.outcome, Captured::New))
                    .map(|l| l.id);
                if let Some(lead) = &updated.stored {
                    match updated.outcome {
                        Captured::New => {
                            tracing::info!(lead_id = %lead.id, %submission_id, "lead captured")
                        }
                        Captured::Again {
                            added,
                            proposed,
                            not_kept,
                            recorded,
                        } => tracing::info!(
                            lead_id = %lead.id,
                            %submission_id,
                            added,
                            proposed,
                            not_kept,
                            recorded,
                            "lead resubmitted"
                        ),
                    }
                }
                deliver(&self.store, &self.publisher, &updated.events).await;
                let answer = self
                    .tokens
                    .add_to(acceptance(submission_id), created, now)
                    .await;
                Answer::json(StatusCode::CREATED, answer)
            }
            Err(e) => Answer::update_failed(
                e,
                |never| match never {},
                || Answer::internal(&"a lead vanished while it was captured"),
            ),
        }
    }
}
