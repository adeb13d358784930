//! Inbound: `POST /crm/events`, the CRM telling what sales did with a lead (accepted,
//! qualified, opportunity, won, lost, rejected, recycled). The call is authenticated by its
//! Standard Webhooks signature: the CRM signs with the same secret leadflow signs its deliveries
//! with, and whichever configured secret verifies names the CRM. A `webhook-id` seen before
//! answers what it answered the first time and changes nothing.

use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use leadflow_domain::crm::{apply_update, CrmUpdate, CrmUpdateError};
use leadflow_domain::ports::{
    ConfigStore, CrmLinks, EventPublisher, IdempotencyBegin, IdempotencyStore, LeadStore,
    LeadWrite, Outbox, SecretError, SecretSource, StoreError,
};
use leadflow_domain::routing::RoutingConfig;
use leadflow_domain::webhook::{signed_headers, SignedHeaders, WebhookSecret};
use leadflow_domain::{Actor, EventEnvelope, LeadEvent};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::http::{header_str, json_body, Answer};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::retry::lost_race;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const PATH: &str = "/crm/events";
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Marks a replayed `webhook-id`'s answer.
pub const REPLAYED_HEADER: &str = "webhook-replayed";
const MAX_ATTEMPTS: usize = 30;

pub struct CrmCallback<S, P, K> {
    store: S,
    publisher: P,
    secrets: K,
    config: ActiveConfig<S>,
}

fn unauthorized(message: impl Into<String>) -> Answer {
    let mut a = Answer::error(StatusCode::UNAUTHORIZED, message);
    a.headers
        .push(("www-authenticate".into(), "Standard-Webhooks".into()));
    a
}

impl<S, P, K> CrmCallback<S, P, K>
where
    S: LeadStore + ConfigStore + IdempotencyStore + CrmLinks + Outbox,
    P: EventPublisher,
    K: SecretSource,
{
    pub fn new(store: S, publisher: P, secrets: K, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            secrets,
            config,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        self.handle_at(req, Utc::now()).await.into_response()
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
                return Answer::unavailable(&StoreError::Unavailable(e.to_string()));
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
                return Answer::unavailable(&StoreError::Unavailable(e.to_string()));
            }
        };
        if !header_str(req.headers(), "content-type").is_some_and(|c| {
            c.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        }) {
            return Answer::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json");
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
            Err(e) => return Answer::unavailable(&e),
        }
        let answer = self.apply(routing, body, &crm, signed.id, now).await;
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
                Err(e) => return Answer::unavailable(&e),
            },
            (None, None) => {
                return Answer::fields(leadflow_domain::FieldErrors::from([(
                    "lead_id".into(),
                    "give lead_id or external_id".into(),
                )]))
            }
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut lead = match self.store.get(lead_id).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    return Answer::json(
                        StatusCode::NOT_FOUND,
                        json!({ "error": "no such lead", "field": "lead_id" }),
                    )
                }
                Err(e) => return Answer::unavailable(&e),
            };
            if !may_update(routing, &lead, crm) {
                return Answer::error(
                    StatusCode::FORBIDDEN,
                    "this CRM is not the one the lead was handed to",
                );
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
                    Err(e) => return Answer::unavailable(&e),
                }
            }
            let expected = lead.version;
            let change = match apply_update(&mut lead, &update, crm, webhook_id, now) {
                Ok(c) => c,
                Err(CrmUpdateError::AlreadyApplied) => {
                    let mut a = Answer::json(
                        StatusCode::OK,
                        json!({
                            "lead_id": lead_id,
                            "status": update.status.as_str(),
                            "stage": lead.stage,
                            "changed": false,
                        }),
                    );
                    a.headers.push((REPLAYED_HEADER.into(), "true".into()));
                    return a;
                }
                Err(CrmUpdateError::Transition(t)) => {
                    return Answer::json(
                        StatusCode::CONFLICT,
                        json!({ "error": t.to_string(), "from": t.from, "to": t.to, "allowed": t.allowed }),
                    )
                }
                Err(CrmUpdateError::Fields(f)) => return Answer::fields(f),
                Err(e @ CrmUpdateError::OtherRecord(_)) => {
                    return Answer::json(
                        StatusCode::CONFLICT,
                        json!({ "error": e.to_string(), "field": "external_id" }),
                    )
                }
            };
            lead.version = expected + 1;
            let events = if change.stage_changed {
                vec![EventEnvelope::new(
                    lead_id,
                    now,
                    LeadEvent::StageChanged {
                        from: change.from,
                        to: change.to,
                        actor: Actor::Crm(update.by.clone().unwrap_or_else(|| "crm".into())),
                        reason: update.reason.clone(),
                    },
                )]
            } else {
                vec![]
            };
            let write = LeadWrite {
                lead,
                expected_version: Some(expected),
                timeline: change.timeline,
                events,
            };
            match self.store.write(&write).await {
                Ok(()) => {
                    tracing::info!(lead_id = %lead_id, status = update.status.as_str(), from = %change.from, to = %change.to, "CRM status applied");
                    deliver(&self.store, &self.publisher, &write.events).await;
                    return Answer::json(
                        StatusCode::OK,
                        json!({
                            "lead_id": lead_id,
                            "status": update.status.as_str(),
                            "from": change.from,
                            "stage": change.to,
                            "changed": change.stage_changed,
                        }),
                    );
                }
                Err(StoreError::VersionConflict { .. } | StoreError::Busy) => lost_race().await,
                Err(e) => return Answer::unavailable(&e),
            }
        }
        Answer::unavailable(&StoreError::Busy)
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
