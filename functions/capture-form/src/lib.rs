//! `POST /leads`: captures a lead from a landing-page form (urlencoded, no JavaScript needed)
//! or an API client (JSON), stores it exactly once, and announces `LeadCaptured`.

pub mod decode;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use leadflow_domain::bant::Bant;
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::ports::{
    ConfigStore, Counters, EventPublisher, IdempotencyBegin, IdempotencyStore, LeadStore,
    LeadWrite, Outbox, ScoreStore, StoreError, TrackedEventQueue,
};
use leadflow_domain::submission::FieldErrors;
use leadflow_domain::tracking::MAX_EVENTS_PER_BATCH;
use leadflow_domain::{Actor, TimelineEntry};
use leadflow_domain::{EventEnvelope, Lead, LeadId, LeadSubmission, SubmissionRules, TrackedEvent};
use leadflow_lambda::active_config::{ttl_from, ActiveConfig};
use leadflow_lambda::config::{self, ConfigError};
use leadflow_lambda::http::{header_str, json_body, Answer};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::retry::lost_race;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::decode::{body_kind, decode, BodyKind, DecodeError, MAX_BODY_BYTES};

/// A batch of 100 events with long URLs and properties fits; SQS takes 256 KiB per message.
pub const MAX_EVENTS_BODY_BYTES: usize = 128 * 1024;

/// The counter that honeypot hits go to (per UTC day).
pub const HONEYPOT_COUNTER: &str = "honeypot_hits";
/// The field a form names its thank-you page in.
pub const REDIRECT_FIELD: &str = "_redirect";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How often a capture retries after losing a race to a concurrent submission of the same e-mail
/// (each round of a race has one winner, so this bounds the burst one e-mail can take at once).
const MAX_ATTEMPTS: usize = 30;

/// What the function is told by its environment (template.yaml).
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Origins allowed to call from a browser (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Origins (`https://example.com`) a `_redirect` may point to.
    pub redirect_allowlist: Vec<String>,
    pub honeypot_field: String,
    pub rules: SubmissionRules,
    /// How long the active configuration is used before looking again.
    pub config_cache: std::time::Duration,
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
            config_cache: ttl_from(config::optional("CONFIG_CACHE_SECONDS").as_deref()),
        })
    }

    /// `ALLOWED_ORIGINS`, `REDIRECT_ALLOWLIST`, `HONEYPOT_FIELD` (default `_gotcha`),
    /// `REQUIRED_FIELDS` (default `email`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(
            &config::optional("ALLOWED_ORIGINS").unwrap_or_default(),
            &config::optional("REDIRECT_ALLOWLIST").unwrap_or_default(),
            &config::optional("HONEYPOT_FIELD").unwrap_or_else(|| "_gotcha".into()),
            &config::optional("REQUIRED_FIELDS").unwrap_or_else(|| "email".into()),
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

/// The capture handler, generic over its store and publisher so tests and `cargo dev` run the
/// same code as Lambda.
pub struct CaptureForm<S, P, Q> {
    store: S,
    publisher: P,
    queue: Q,
    config: CaptureConfig,
    /// The scoring model's settings the segment listing needs (interest half-life).
    active: ActiveConfig<S>,
}

/// The paths this function serves (template.yaml routes them here).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Leads,
    Events,
    /// `/leads/{id}/qualification`: BANT by inside sales (IAM-authorised in template.yaml).
    Qualification(String),
    /// `/segments/{tag}/leads`: the leads interested in a tag (IAM-authorised).
    Segment(String),
    /// `/leads/{id}`: one lead with its timeline, for sales tools and CRMs (IAM-authorised).
    Lead(String),
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["", "leads"] => Some(Route::Leads),
            ["", "events"] => Some(Route::Events),
            ["", "leads", id, "qualification"] => Some(Route::Qualification((*id).to_owned())),
            ["", "segments", tag, "leads"] => Some(Route::Segment((*tag).to_owned())),
            ["", "leads", id] => Some(Route::Lead((*id).to_owned())),
            _ => None,
        }
    }

    fn allowed_methods(&self) -> &'static str {
        match self {
            Route::Leads | Route::Events => "POST, OPTIONS",
            Route::Qualification(_) => "PATCH, OPTIONS",
            Route::Segment(_) | Route::Lead(_) => "GET, OPTIONS",
        }
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

impl<S, P, Q> CaptureForm<S, P, Q>
where
    S: LeadStore + Outbox + IdempotencyStore + Counters + ScoreStore + ConfigStore + Clone,
    P: EventPublisher,
    Q: TrackedEventQueue,
{
    pub fn new(store: S, publisher: P, queue: Q, config: CaptureConfig) -> Self {
        let active = ActiveConfig::new(store.clone(), config.config_cache);
        Self {
            store,
            publisher,
            queue,
            config,
            active,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        self.handle_at(req, Utc::now()).await
    }

    /// Handles one request as if it arrived at `now`.
    pub async fn handle_at(&self, req: Request, now: DateTime<Utc>) -> Response<Body> {
        let origin = header_str(req.headers(), "origin").map(str::to_owned);
        let cors_origin = origin.filter(|o| self.config.origin_allowed(o));
        let answer = match Route::of(req.uri().path()) {
            None => Answer::error(StatusCode::NOT_FOUND, "no such route"),
            Some(route) => match (req.method(), &route) {
                (&Method::OPTIONS, _) => self.preflight(&req, &route, cors_origin.is_some()),
                (&Method::POST, Route::Leads) => self.post_lead(&req, now).await,
                (&Method::POST, Route::Events) => self.post_events(&req, now).await,
                (&Method::PATCH, Route::Qualification(id)) => {
                    self.patch_qualification(id, &req, now).await
                }
                (&Method::GET, Route::Segment(tag)) => self.segment(tag, &req, now).await,
                (&Method::GET, Route::Lead(id)) => self.get_lead(id).await,
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

    /// `PATCH /leads/{id}/qualification`: inside sales records BANT.
    async fn patch_qualification(&self, id: &str, req: &Request, now: DateTime<Utc>) -> Answer {
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return Answer::too_large(MAX_BODY_BYTES);
        }
        if !matches!(
            body_kind(header_str(req.headers(), "content-type")),
            Ok(BodyKind::Json)
        ) {
            return Answer::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json");
        }
        let patch = match json_body(body) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let Ok(lead_id) = id.parse::<LeadId>() else {
            return Answer::error(StatusCode::NOT_FOUND, "no such lead");
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut lead = match self.store.get(lead_id).await {
                Ok(Some(lead)) => lead,
                Ok(None) => return Answer::error(StatusCode::NOT_FOUND, "no such lead"),
                Err(e) => return Answer::unavailable(&e),
            };
            let bant = match Bant::patch(lead.bant.as_ref(), &patch, now) {
                Ok(b) => b,
                Err(errors) => return Answer::fields(errors),
            };
            let expected = lead.version;
            let timeline = TimelineEntry {
                at: now,
                actor: Actor::User(bant.by.clone()),
                action: "bant_updated".into(),
                detail: json!({ "complete": bant.is_complete(), "fields": patch.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()) }),
                reason: None,
            };
            lead.bant = Some(bant.clone());
            lead.updated_at = now;
            lead.version = expected + 1;
            let write = LeadWrite {
                lead,
                expected_version: Some(expected),
                timeline: vec![timeline],
                events: vec![],
            };
            match self.store.write(&write).await {
                Ok(()) => {
                    return Answer::json(
                        StatusCode::OK,
                        json!({ "lead_id": lead_id, "bant": bant, "complete": bant.is_complete(), "stage": write.lead.stage }),
                    )
                }
                Err(StoreError::VersionConflict { .. } | StoreError::Busy) => lost_race().await,
                Err(e) => return Answer::unavailable(&e),
            }
        }
        Answer::unavailable(&StoreError::Busy)
    }

    /// `GET /leads/{id}`: the lead as stored, with its whole timeline (oldest first).
    async fn get_lead(&self, id: &str) -> Answer {
        let Ok(lead_id) = id.parse::<LeadId>() else {
            return Answer::error(StatusCode::NOT_FOUND, "no such lead");
        };
        let lead = match self.store.get(lead_id).await {
            Ok(Some(lead)) => lead,
            Ok(None) => return Answer::error(StatusCode::NOT_FOUND, "no such lead"),
            Err(e) => return Answer::unavailable(&e),
        };
        match self.store.timeline(lead_id).await {
            Ok(timeline) => Answer::json(
                StatusCode::OK,
                json!({ "lead": lead, "timeline": timeline }),
            ),
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// `GET /segments/{tag}/leads?min_weight=&limit=&cursor=`: leads whose decayed interest in
    /// the tag is at least `min_weight` (default 0.5; one fresh event tagged so weighs 1.0).
    async fn segment(&self, tag: &str, req: &Request, now: DateTime<Utc>) -> Answer {
        let tag = tag.to_lowercase();
        let mut errors = FieldErrors::new();
        if tag.is_empty()
            || tag.len() > 64
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errors.insert(
                "tag".into(),
                "must be 1 to 64 characters of a-z, 0-9 and - _ .".into(),
            );
        }
        let params = req.query_string_parameters();
        let min_weight = match params.first("min_weight").map(str::parse::<f64>) {
            None => 0.5,
            Some(Ok(w)) if w.is_finite() && w >= 0.0 => w,
            Some(_) => {
                errors.insert("min_weight".into(), "must be a number of at least 0".into());
                0.0
            }
        };
        let limit = match params.first("limit").map(str::parse::<usize>) {
            None => 50,
            Some(Ok(l)) if (1..=100).contains(&l) => l,
            Some(_) => {
                errors.insert(
                    "limit".into(),
                    "must be a whole number from 1 to 100".into(),
                );
                0
            }
        };
        let cursor = params.first("cursor").map(str::to_owned);
        if cursor
            .as_deref()
            .is_some_and(|c| c.parse::<LeadId>().is_err())
        {
            errors.insert("cursor".into(), "is not a cursor this API returned".into());
        }
        if !errors.is_empty() {
            return Answer::fields(errors);
        }
        let half_life_days = match self.active.get().await {
            Ok(c) => c.config.scoring.interest_half_life().as_days(),
            Err(e) => {
                tracing::error!(error = %e, "no scoring model for the segment");
                return Answer::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no scoring configuration is active",
                );
            }
        };
        let mut leads = Vec::new();
        let mut next = cursor;
        // Members below the threshold are skipped, so a page may take several reads; a full
        // page stops at its last lead, which is then the cursor.
        'pages: for _ in 0..10 {
            let (members, after) = match self.store.segment_page(&tag, next.as_deref(), limit).await
            {
                Ok(page) => page,
                Err(e) => return Answer::unavailable(&e),
            };
            next = after;
            for m in members {
                let days = (now - m.at).num_milliseconds() as f64 / 86_400_000.0;
                let weight = m.weight * 0.5f64.powf(days.max(0.0) / half_life_days);
                if weight >= min_weight {
                    leads.push(json!({ "lead_id": m.lead_id, "weight": (weight * 1000.0).round() / 1000.0 }));
                    if leads.len() == limit {
                        next = Some(m.lead_id.to_string());
                        break 'pages;
                    }
                }
            }
            if next.is_none() {
                break;
            }
        }
        Answer::json(
            StatusCode::OK,
            json!({ "tag": tag, "min_weight": min_weight, "leads": leads, "next_cursor": next }),
        )
    }

    /// `POST /events`: a batch of behavioural events, each validated on its own; the valid ones
    /// are queued for scoring. Answers 202 with the fate of every event.
    async fn post_events(&self, req: &Request, now: DateTime<Utc>) -> Answer {
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_EVENTS_BODY_BYTES {
            return Answer::too_large(MAX_EVENTS_BODY_BYTES);
        }
        match body_kind(header_str(req.headers(), "content-type")) {
            Ok(BodyKind::Json) => {}
            _ => return Answer::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json"),
        }
        let value = match json_body(body) {
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
            Err(err) => Answer::unavailable(&err),
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

    async fn capture(
        &self,
        raw: &leadflow_domain::submission::RawSubmission,
        req: &Request,
        now: DateTime<Utc>,
    ) -> Answer {
        let submission = match self.config.rules.validate(raw) {
            Ok(s) => s,
            Err(errors) => return Answer::fields(errors),
        };
        let ctx = client_context(req);
        match self.store_submission(submission, &ctx, now).await {
            Ok((status, body, events)) => {
                deliver(&self.store, &self.publisher, &events).await;
                Answer::json(status, body)
            }
            Err(err) => Answer::unavailable(&err),
        }
    }

    /// Creates the lead, or merges into the lead that has this e-mail. Races between concurrent
    /// submissions are settled by the store's conditions and retried here.
    async fn store_submission(
        &self,
        submission: LeadSubmission,
        ctx: &SubmissionContext,
        now: DateTime<Utc>,
    ) -> Result<(StatusCode, serde_json::Value, Vec<EventEnvelope>), StoreError> {
        let mut last_err = None;
        for _ in 0..MAX_ATTEMPTS {
            match self.store.find_by_email(&submission.email).await? {
                None => {
                    let captured = Lead::capture(LeadId::new_at(now), submission.clone(), ctx, now);
                    let event = EventEnvelope::new(captured.lead.id, now, captured.event);
                    let write = LeadWrite {
                        lead: captured.lead,
                        expected_version: None,
                        timeline: vec![captured.timeline],
                        events: vec![event],
                    };
                    match self.store.write(&write).await {
                        Ok(()) => {
                            tracing::info!(lead_id = %write.lead.id, "lead captured");
                            let body = json!({ "lead_id": write.lead.id, "status": "created" });
                            return Ok((StatusCode::CREATED, body, write.events));
                        }
                        Err(e @ (StoreError::EmailTaken | StoreError::Busy)) => {
                            last_err = Some(e);
                            lost_race().await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Some(mut lead) => {
                    let expected = lead.version;
                    let merged = lead.merge(submission.clone(), ctx, now);
                    lead.version = expected + 1;
                    let write = LeadWrite {
                        lead,
                        expected_version: Some(expected),
                        timeline: vec![merged.timeline],
                        events: vec![],
                    };
                    match self.store.write(&write).await {
                        Ok(()) => {
                            tracing::info!(lead_id = %write.lead.id, changed = merged.changed_fields.len(), "lead resubmitted");
                            let body = json!({ "lead_id": write.lead.id, "status": "updated", "changed_fields": merged.changed_fields });
                            return Ok((StatusCode::OK, body, vec![]));
                        }
                        Err(e @ (StoreError::VersionConflict { .. } | StoreError::Busy)) => {
                            last_err = Some(e);
                            lost_race().await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "gave up after {MAX_ATTEMPTS} concurrent attempts: {}",
            last_err.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}
