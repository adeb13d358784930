//! Inbound: `POST /crm/events`, the CRM telling what sales did with a lead (accepted,
//! qualified, opportunity, won, lost, rejected, recycled). The call is authenticated by its
//! Standard Webhooks signature: the CRM signs with the same secret leadflow signs its deliveries
//! with, and whichever configured secret verifies names the CRM. A `webhook-id` seen before
//! answers what it answered the first time and changes nothing.

use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::secrets::Secrets;
use leadflow_aws::Clients;
use leadflow_domain::crm::{apply_update, CrmUpdate, CrmUpdateError};
use leadflow_domain::ports::{
    ConfigStore, CrmLinks, EventPublisher, IdempotencyBegin, IdempotencyStore, LeadStore, Outbox,
    RateLimitStore, SecretError, SecretSource,
};
use leadflow_domain::rate_limit::{ClientKey, RateLimit, Verdict};
use leadflow_domain::routing::RoutingConfig;
use leadflow_domain::sla::SlaConfig;
use leadflow_domain::webhook::{signed_headers, SignedHeaders, WebhookSecret};
use leadflow_domain::{Decision, Stage};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::http::{header_str, json_body, require_json, Answer};
use leadflow_lambda::lead_update::update_read;
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::retry::lost_race;
use leadflow_lambda::run::HttpFunction;
use leadflow_lambda::wiring::{self, Backend};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const PATH: &str = "/crm/events";
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Marks a replayed `webhook-id`'s answer.
pub const REPLAYED_HEADER: &str = "webhook-replayed";

pub struct CrmCallback<S, P, K> {
    store: S,
    publisher: P,
    secrets: K,
    config: ActiveConfig<S>,
    limit: ClientLimit,
}

/// The per-client rate limit of `POST /crm/events` (`None`: off) and the key client addresses
/// are hashed with. Every call counts, signed or not, so a flood of forged signatures is
/// refused before any secret is read.
#[derive(Clone, Default)]
pub struct ClientLimit {
    pub limit: Option<RateLimit>,
    pub hash_key: Vec<u8>,
}

impl ClientLimit {
    /// `RATE_LIMIT_CRM_EVENTS` (`off`, or e.g. `600/min burst 300`; required, template.yaml
    /// sets it) and `RATE_LIMIT_KEY` when it is on.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let name = "RATE_LIMIT_CRM_EVENTS";
        let limit = RateLimit::parse(&env.required(name)?).map_err(|e| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        })?;
        let hash_key = match limit {
            None => Vec::new(),
            Some(_) => env.required("RATE_LIMIT_KEY")?.into_bytes(),
        };
        Ok(Self { limit, hash_key })
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

fn unauthorized(message: impl Into<String>) -> Answer {
    let mut a = Answer::error(StatusCode::UNAUTHORIZED, message);
    a.headers
        .push(("www-authenticate".into(), "Standard-Webhooks".into()));
    a
}

impl CrmCallback<DynamoStore, EventBridgePublisher, Secrets> {
    /// The table, the bus and the CRMs' secrets (`env:NAME` from this function's environment,
    /// or Secrets Manager).
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        Ok(
            Self::new(b.store, b.publisher, wiring::secrets(aws, env), b.config)
                .with_limit(ClientLimit::from_env(env)?),
        )
    }
}

impl<S, P, K> HttpFunction for CrmCallback<S, P, K>
where
    S: LeadStore + ConfigStore + IdempotencyStore + CrmLinks + Outbox + RateLimitStore,
    P: EventPublisher,
    K: SecretSource,
{
    async fn handle(&self, req: Request) -> Response<Body> {
        self.handle_at(req, Utc::now()).await.into_response()
    }
}

impl<S, P, K> CrmCallback<S, P, K>
where
    S: LeadStore + ConfigStore + IdempotencyStore + CrmLinks + Outbox + RateLimitStore,
    P: EventPublisher,
    K: SecretSource,
{
    pub fn new(store: S, publisher: P, secrets: K, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            secrets,
            config,
            limit: ClientLimit::default(),
        }
    }

    /// Enforces `limit` per client (none unless set).
    pub fn with_limit(mut self, limit: ClientLimit) -> Self {
        self.limit = limit;
        self
    }

    /// The 429 answer when the client has spent its bucket. When the buckets cannot be
    /// reached the call goes through: its signature still has to verify.
    async fn over_limit(&self, req: &Request, now: DateTime<Utc>) -> Option<Answer> {
        let limit = self.limit.limit?;
        let client = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        };
        let key = ClientKey::new(
            &self.limit.hash_key,
            "crm-events",
            client.as_deref().unwrap_or_default(),
            None,
        );
        match self.store.take_token(&key, &limit, now).await {
            Ok(Verdict::Admit(_)) => None,
            Ok(Verdict::Refuse { retry_after }) => {
                tracing::info!(route = "crm-events", "client over its rate limit; refused");
                Some(too_many_requests(retry_after))
            }
            Err(err) => {
                tracing::warn!(error = %err, route = "crm-events", "rate limit not checked; call let through");
                None
            }
        }
    }

    pub async fn handle_at(&self, req: Request, now: DateTime<Utc>) -> Answer {
        if req.uri().path().trim_end_matches('/') != PATH {
            return Answer::error(StatusCode::NOT_FOUND, "no such route");
        }
        if req.method() != Method::POST {
            let mut a = Answer::error(StatusCode::METHOD_NOT_ALLOWED, "allowed: POST");
            a.headers.push(("allow".into(), "POST".into()));
            return a;
        }
        // Before the body, the signature or the store is looked at.
        if let Some(refused) = self.over_limit(&req, now).await {
            return refused;
        }
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return Answer::too_large(MAX_BODY_BYTES);
        }
        let signed = match signed_headers(|name| header_str(req.headers(), name), now) {
            Ok(s) => s,
            Err(e) => return unauthorized(e.to_string()),
        };
        let loaded = match self.config.get().await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "no usable configuration");
                return Answer::unavailable(&e);
            }
        };
        let Some(routing) = loaded.config.routing.as_ref() else {
            return unauthorized("no CRM is configured to call back");
        };
        // Which CRM signed: the first configured secret that verifies. None: perhaps a CRM
        // rotated its secret, so the cached values are read afresh (at most every few seconds).
        let mut signer = self.signer(routing, &signed, body).await;
        if matches!(signer, Ok(None)) {
            self.secrets.refresh();
            signer = self.signer(routing, &signed, body).await;
        }
        let crm = match signer {
            Ok(Some(crm)) => crm,
            Ok(None) => {
                return unauthorized(
                    "no signature in webhook-signature matches a configured CRM secret",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "a CRM secret could not be read");
                return Answer::unavailable(&e);
            }
        };
        if let Err(answer) = require_json(req.headers()) {
            return answer;
        }
        let key = format!("crm-event#{crm}#{}", signed.id);
        let fingerprint = hex::encode(Sha256::digest(body));
        match self.store.begin(&key, &fingerprint, now).await {
            Ok(IdempotencyBegin::Started) => {}
            Ok(IdempotencyBegin::Replay(stored)) => {
                return Answer::from_stored(stored, REPLAYED_HEADER)
            }
            Ok(IdempotencyBegin::InProgress) => {
                let mut a = Answer::error(
                    StatusCode::CONFLICT,
                    "this webhook-id is being processed; retry shortly",
                );
                a.headers.push(("retry-after".into(), "1".into()));
                return a;
            }
            Ok(IdempotencyBegin::Mismatch) => {
                return Answer::json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "error": "this webhook-id was used before with another body", "field": "webhook-id" }),
                )
            }
            Err(e) => return Answer::store_failed(&e),
        }
        let answer = self
            .apply(routing, &loaded.config.sla, body, &crm, signed.id, now)
            .await;
        // An answer is final unless the service failed: a replay gets it again. Should storing
        // it fail, a re-run is still recognised by the webhook-id kept on the lead.
        if answer.status.is_server_error() {
            if let Err(e) = self.store.release(&key).await {
                tracing::warn!(error = %e, "webhook-id not released");
            }
        } else {
            for attempt in 1..=3 {
                match self.store.finish(&key, &answer.stored(), now).await {
                    Ok(()) => break,
                    Err(e) if attempt == 3 => {
                        tracing::warn!(error = %e, "answer for webhook-id not stored")
                    }
                    Err(_) => lost_race().await,
                }
            }
        }
        answer
    }

    /// The secret reference of the CRM whose secret verifies the request. A secret that is
    /// not set is passed over; one that cannot be read is an error only if none verifies.
    async fn signer(
        &self,
        routing: &RoutingConfig,
        signed: &SignedHeaders<'_>,
        body: &[u8],
    ) -> Result<Option<String>, SecretError> {
        let mut unreadable = None;
        for target in routing.crm_targets() {
            match self.secrets.secret(&target.secret).await {
                Ok(value) => {
                    if WebhookSecret::parse(&value).is_ok_and(|s| {
                        s.matches(signed.id, signed.timestamp, body, signed.signatures)
                    }) {
                        return Ok(Some(target.secret.clone()));
                    }
                }
                Err(SecretError::Missing(r)) => {
                    tracing::warn!(secret = %r, "a CRM's secret is not set")
                }
                Err(e) => unreadable = Some(e),
            }
        }
        match unreadable {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    async fn apply(
        &self,
        routing: &RoutingConfig,
        sla: &SlaConfig,
        body: &[u8],
        crm: &str,
        webhook_id: &str,
        now: DateTime<Utc>,
    ) -> Answer {
        let value = match json_body(body) {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        let update = match CrmUpdate::parse(&value) {
            Ok(u) => u,
            Err(errors) => return Answer::fields(errors),
        };
        let lead_id = match (update.lead_id, update.external_id.as_deref()) {
            (Some(id), _) => id,
            (None, Some(ext)) => match self.store.lead_by_external_id(crm, ext).await {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return Answer::json(
                        StatusCode::NOT_FOUND,
                        json!({ "error": "no lead is linked to this external_id; send lead_id once to link it", "field": "external_id" }),
                    )
                }
                Err(e) => return Answer::store_failed(&e),
            },
            (None, None) => {
                return Answer::fields(leadflow_domain::FieldErrors::from([(
                    "lead_id".into(),
                    "give lead_id or external_id".into(),
                )]))
            }
        };
        let lead = match self.store.get(lead_id).await {
            Ok(Some(l)) => l,
            Ok(None) => return no_such_lead(),
            Err(e) => return Answer::store_failed(&e),
        };
        if !may_update(routing, &lead, crm) {
            return forbidden();
        }
        // The CRM's id is linked once the lead is known to be this CRM's.
        if let (Some(ext), true, None) = (
            update.external_id.as_deref(),
            update.lead_id.is_some(),
            lead.crm
                .as_ref()
                .filter(|r| r.crm == crm)
                .and_then(|r| r.external_id.as_ref()),
        ) {
            match self.store.link_external_id(crm, ext, lead_id).await {
                Ok(linked) if linked == lead_id => {}
                Ok(other) => {
                    return Answer::json(
                        StatusCode::CONFLICT,
                        json!({ "error": format!("external_id is linked to another lead ({other})"), "field": "external_id" }),
                    )
                }
                Err(e) => return Answer::store_failed(&e),
            }
        }
        let applied = update_read(&self.store, lead, now, |mut lead| {
            // Decided again on every attempt: the lead may have been handed elsewhere meanwhile.
            if !may_update(routing, &lead, crm) {
                return Err(Refusal::Forbidden);
            }
            match apply_update(&mut lead, &update, crm, webhook_id, now, sla) {
                Ok(c) => {
                    let applied = Applied::Now {
                        from: c.from,
                        to: c.to,
                        changed: c.stage_changed,
                    };
                    Ok(Decision::store(lead, c.change, applied))
                }
                Err(CrmUpdateError::AlreadyApplied) => {
                    Ok(Decision::Keep(Applied::Before(lead.stage)))
                }
                Err(e) => Err(Refusal::Update(e)),
            }
        })
        .await;
        let updated = match applied {
            Ok(u) => u,
            Err(e) => return Answer::update_failed(e, refused, no_such_lead),
        };
        match updated.outcome {
            Applied::Now { from, to, changed } => {
                tracing::info!(lead_id = %lead_id, status = update.status.as_str(), from = %from, to = %to, "CRM status applied");
                deliver(&self.store, &self.publisher, &updated.events).await;
                Answer::json(
                    StatusCode::OK,
                    json!({
                        "lead_id": lead_id,
                        "status": update.status.as_str(),
                        "from": from,
                        "stage": to,
                        "changed": changed,
                    }),
                )
            }
            // Applied before (its answer was lost): nothing changes a second time.
            Applied::Before(stage) => {
                let mut a = Answer::json(
                    StatusCode::OK,
                    json!({
                        "lead_id": lead_id,
                        "status": update.status.as_str(),
                        "stage": stage,
                        "changed": false,
                    }),
                );
                a.headers.push((REPLAYED_HEADER.into(), "true".into()));
                a
            }
        }
    }
}

/// What became of a CRM's update.
enum Applied {
    Now {
        from: Stage,
        to: Stage,
        changed: bool,
    },
    /// This webhook-id was applied before; the lead is at this stage.
    Before(Stage),
}

/// Why a CRM's update was not applied.
enum Refusal {
    /// The lead is not (any longer) this CRM's.
    Forbidden,
    Update(CrmUpdateError),
}

fn no_such_lead() -> Answer {
    Answer::json(
        StatusCode::NOT_FOUND,
        json!({ "error": "no such lead", "field": "lead_id" }),
    )
}

fn forbidden() -> Answer {
    Answer::error(
        StatusCode::FORBIDDEN,
        "this CRM is not the one the lead was handed to",
    )
}

fn refused(r: Refusal) -> Answer {
    match r {
        Refusal::Forbidden => forbidden(),
        Refusal::Update(CrmUpdateError::Transition(t)) => Answer::json(
            StatusCode::CONFLICT,
            json!({ "error": t.to_string(), "from": t.from, "to": t.to, "allowed": t.allowed }),
        ),
        Refusal::Update(CrmUpdateError::Fields(f)) => Answer::fields(f),
        Refusal::Update(e @ CrmUpdateError::OtherRecord(_)) => Answer::json(
            StatusCode::CONFLICT,
            json!({ "error": e.to_string(), "field": "external_id" }),
        ),
        // Handled as a replay before it gets here.
        Refusal::Update(e @ CrmUpdateError::AlreadyApplied) => Answer::internal(&e),
    }
}

/// Whether the CRM may report on the lead: the CRM of its assignment; without one (sales
/// handed it back), the CRM that reported on it last.
fn may_update(routing: &RoutingConfig, lead: &leadflow_domain::Lead, crm: &str) -> bool {
    match &lead.assignment {
        Some(a) => routing
            .crm_for(&a.assigned_to)
            .is_some_and(|t| t.secret == crm),
        None => lead.crm.as_ref().is_some_and(|r| r.crm == crm),
    }
}
