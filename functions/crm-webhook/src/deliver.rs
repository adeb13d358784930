//! Outbound: a routed lead goes to its target's CRM as a signed Standard Webhooks POST with
//! everything known about it (`lead.routed`; a partner's open offer without contact data,
//! `lead.offered`, and the whole lead once it accepts), and so do the SLA notices
//! (`lead.sla.reminder`, `lead.sla.escalated`, `lead.reassigned`, `lead.offer.expired`), to
//! the person's CRM or the team's notification URL. A failed attempt is retried by hiding the
//! SQS message for the backoff delay; after the retry window the message is parked on the
//! DLQ. Every attempt is on the lead's timeline. A delivery that succeeded is marked, so a
//! redelivered message does not POST twice; where it still does (the mark failed), the CRM
//! drops it by `webhook-id`.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::secrets::Secrets;
use leadflow_aws::sqs::SqsRetryQueue;
use leadflow_aws::Clients;
use leadflow_domain::assignment::{AssignedTo, Assignment};
use leadflow_domain::crm::{
    self, LeadContext, LeadRoutedPayload, Notice, NoticePayload, Recipient, RetryPolicy,
};
use leadflow_domain::endpoint::EndpointMode;
use leadflow_domain::ports::{
    ConfigStore, IdempotencyBegin, IdempotencyStore, LeadStore, RetryQueue, ScoreStore,
    SecretSource, StoredResponse,
};
use leadflow_domain::webhook::{self, WebhookSecret};
use leadflow_domain::{
    Change, Decision, EventEnvelope, Lead, LeadEvent, LeadId, TimelineAction, TimelineEntry,
};
use leadflow_lambda::active_config::{ActiveConfig, LoadedConfig};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::update;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{lead_of, leadflow_event, RecordError};
use leadflow_lambda::wiring;
use serde_json::json;

use crate::transport::{HttpsTransport, PostOutcome, WebhookTransport};

/// Settings from the function's environment.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    /// The HTTP API's base URL, for the payload's links.
    pub api_url: Option<String>,
    /// Where CRMs may be: public https endpoints, or anything in local mode.
    pub endpoints: EndpointMode,
}

impl DeliverySettings {
    /// `CRM_RETRY_BASE_SECONDS`, `CRM_RETRY_WINDOW_SECONDS`, `PUBLIC_API_URL`, and
    /// `LEADFLOW_LOCAL` (`true`: local mode, set by the local stack only; the template never
    /// sets it, so a deployment sends only to public https endpoints).
    pub fn from_env(env: &Env) -> Self {
        // Bounded like the template's parameters (a window past the queue's 14-day retention
        // means nothing), so no value can overflow the time arithmetic.
        let secs = |name: &str, default: Duration, max: Duration| {
            env.optional(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v > 0)
                .and_then(Duration::try_seconds)
                .map(|d| d.min(max))
                .unwrap_or(default)
        };
        Self {
            retry: RetryPolicy {
                base: secs(
                    "CRM_RETRY_BASE_SECONDS",
                    RetryPolicy::DEFAULT.base,
                    crm::MAX_RETRY_DELAY,
                ),
                window: secs(
                    "CRM_RETRY_WINDOW_SECONDS",
                    RetryPolicy::DEFAULT.window,
                    Duration::days(14),
                ),
            },
            api_url: env.optional("PUBLIC_API_URL"),
            endpoints: endpoint_mode(env),
        }
    }
}

pub struct Deliver<S, T, Q, K> {
    store: S,
    transport: T,
    queue: Q,
    secrets: K,
    config: ActiveConfig<S>,
    settings: DeliverySettings,
}

/// Where a delivery attempt stands, from the SQS message's system attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AttemptInfo {
    number: u32,
    first_at: DateTime<Utc>,
}

fn attempt_info(m: &SqsMessage, now: DateTime<Utc>) -> AttemptInfo {
    let number = m
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let first_at = m
        .attributes
        .get("ApproximateFirstReceiveTimestamp")
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or(now);
    AttemptInfo { number, first_at }
}

/// Local mode when `LEADFLOW_LOCAL` is `true` or `1`; anything else is a deployment.
pub fn endpoint_mode(env: &Env) -> EndpointMode {
    match env.optional("LEADFLOW_LOCAL").as_deref().map(str::trim) {
        Some("true" | "1") => EndpointMode::Local,
        _ => EndpointMode::Public,
    }
}

fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

/// The host of the endpoint, for the timeline (never its path or query: they may carry tokens).
fn host_of(endpoint: &str) -> String {
    reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_default()
}

impl Deliver<DynamoStore, HttpsTransport, SqsRetryQueue, Secrets> {
    /// The table, the HTTPS client, this function's queue and DLQ (`QUEUE_URL`, `DLQ_URL`),
    /// the CRMs' secrets and the delivery settings.
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let store = wiring::store(aws, env)?;
        let settings = DeliverySettings::from_env(env);
        let transport = HttpsTransport::new(settings.endpoints);
        Ok(Self::new(
            store.clone(),
            transport,
            SqsRetryQueue::new(
                aws.sqs(),
                env.required("QUEUE_URL")?,
                env.required("DLQ_URL")?,
            ),
            wiring::secrets(aws, env),
            ActiveConfig::from_env(store, env),
            settings,
        ))
    }
}

impl<S, T, Q, K> SqsFunction for Deliver<S, T, Q, K>
where
    S: LeadStore + ScoreStore + ConfigStore + IdempotencyStore,
    T: WebhookTransport,
    Q: RetryQueue,
    K: SecretSource,
{
    async fn record(&self, m: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        self.deliver(m, now).await
    }
}

impl<S, T, Q, K> Deliver<S, T, Q, K>
where
    S: LeadStore + ScoreStore + ConfigStore + IdempotencyStore,
    T: WebhookTransport,
    Q: RetryQueue,
    K: SecretSource,
{
    pub fn new(
        store: S,
        transport: T,
        queue: Q,
        secrets: K,
        config: ActiveConfig<S>,
        settings: DeliverySettings,
    ) -> Self {
        Self {
            store,
            transport,
            queue,
            secrets,
            config,
            settings,
        }
    }

    /// One delivery attempt of the routed lead or SLA notice in `m`.
    async fn deliver(&self, m: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        let body = m.body.as_deref().unwrap_or_default();
        let event = leadflow_event(body)?;
        let Some(what) = What::of(&event, self.settings.api_url.as_deref()) else {
            return Ok(());
        };
        let attempt = attempt_info(m, now);
        let webhook_id = crm::webhook_id(event.event_id);
        let key = format!("crm-delivery#{webhook_id}");
        match self.store.begin(&key, "", now).await? {
            IdempotencyBegin::Started => {}
            // Delivered before: this is a redelivery of a message whose delete was lost.
            IdempotencyBegin::Replay(_) | IdempotencyBegin::Mismatch => return Ok(()),
            IdempotencyBegin::InProgress => {
                return Err(RecordError::Retryable(
                    "another attempt of this delivery is running".into(),
                ))
            }
        }
        let result = self
            .attempt(&event, &what, &webhook_id, attempt, m, body, now)
            .await;
        match &result {
            Ok(true) => {
                let done = StoredResponse {
                    status: 200,
                    headers: vec![],
                    body: String::new(),
                };
                if let Err(e) = self.store.finish(&key, &done, now).await {
                    tracing::warn!(error = %e, "delivery mark not stored; a redelivery may POST again (same webhook-id)");
                }
            }
            _ => {
                if let Err(e) = self.store.release(&key).await {
                    tracing::warn!(error = %e, "delivery key not released; the next attempt waits for it to expire");
                }
            }
        }
        result.map(|_| ())
    }

    async fn note(
        &self,
        event: &EventEnvelope,
        now: DateTime<Utc>,
        action: TimelineAction,
        detail: serde_json::Value,
        reason: Option<String>,
    ) {
        let mut entry = TimelineEntry::system(now, action, detail);
        entry.reason = reason;
        if let Err(e) = self.store.append_timeline(event.lead_id, &[entry]).await {
            tracing::warn!(lead_id = %event.lead_id, error = %e, action = ?action, "timeline entry not stored");
        }
    }

    /// Where a delivery goes: the assignee's CRM for a lead; for a notice, the team's
    /// notification URL when it has one, else the CRM of the person concerned.
    fn target(
        &self,
        what: &What<'_>,
        loaded: &LoadedConfig,
    ) -> Option<leadflow_domain::routing::CrmTarget> {
        let routing = loaded.config.routing.as_ref()?;
        match what {
            What::Lead { assignment, .. } => routing.crm_for(&assignment.assigned_to).cloned(),
            What::Notice {
                recipient, notice, ..
            } => loaded
                .config
                .sla
                .team_of_pool(&notice.assignment.pool)
                .and_then(|t| t.notify.clone())
                .or_else(|| {
                    let to = match recipient {
                        Recipient::Assignee(to) => to.clone(),
                        Recipient::Manager(m) => AssignedTo::ManagerQueue {
                            id: m.id.clone(),
                            name: m.name.clone(),
                            email: m.email.clone(),
                        },
                    };
                    routing.crm_for(&to).cloned()
                }),
        }
    }

    /// The body of a delivery: the lead with everything known (a partner's open offer
    /// without contact data), or a notice.
    async fn payload(
        &self,
        what: &What<'_>,
        lead: Option<&Lead>,
        event: &EventEnvelope,
        loaded: &LoadedConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, RecordError> {
        let body = match (what, lead) {
            (What::Lead { assignment, kind }, Some(lead)) => {
                let score = self.store.score(lead.id).await?;
                let interests = score
                    .as_ref()
                    .map(|s| s.state.interests(&loaded.config.scoring, now))
                    .unwrap_or_default();
                let activities = self
                    .store
                    .recent_activities(lead.id, crm::ACTIVITIES_SENT)
                    .await?;
                let context = LeadContext::build(
                    lead,
                    assignment,
                    score.as_ref(),
                    &interests,
                    &activities,
                    self.settings.api_url.as_deref(),
                );
                serde_json::to_vec(&LeadRoutedPayload {
                    kind: (*kind).into(),
                    version: crm::PAYLOAD_VERSION,
                    timestamp: event.occurred_at,
                    data: match *kind {
                        crm::LEAD_OFFERED => context.offered(),
                        _ => context,
                    },
                })
            }
            (What::Notice { kind, notice, .. }, _) => serde_json::to_vec(&NoticePayload {
                kind: (*kind).into(),
                version: crm::PAYLOAD_VERSION,
                timestamp: event.occurred_at,
                text: notice.text(kind),
                data: (**notice).clone(),
            }),
            (What::Lead { .. }, None) => {
                return Err(RecordError::Poison(
                    "a lead delivery without its lead".into(),
                ))
            }
        };
        body.map_err(|e| RecordError::Poison(e.to_string()))
    }

    /// One attempt. Ok(true): delivered; Ok(false): settled without a delivery (skipped or
    /// parked on the DLQ); Err: try again when the message reappears.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        event: &EventEnvelope,
        what: &What<'_>,
        webhook_id: &str,
        attempt: AttemptInfo,
        m: &SqsMessage,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RecordError> {
        let lead_id = event.lead_id;
        let kind = what.kind();
        // A lead is sent as it is now, and only while the handover is the current one.
        let lead = match what {
            What::Lead { assignment, .. } => {
                let lead = lead_of(&self.store, lead_id).await?;
                let current = lead.assignment.as_ref().is_some_and(|a| {
                    a.at == assignment.at && a.assigned_to == assignment.assigned_to
                });
                if !current {
                    // Reassigned or handed back to marketing since: this handover is stale.
                    let why = "the lead's assignment changed before it was delivered";
                    return Ok(self.skip(event, what, webhook_id, now, why.into()).await);
                }
                Some(lead)
            }
            What::Notice { .. } => None,
        };
        let loaded = self.config.get().await.map_err(RecordError::retryable)?;
        let Some(target) = self.target(what, &loaded) else {
            let why = format!(
                "no CRM endpoint is configured for this assignment (config version {})",
                loaded.version
            );
            return Ok(self.skip(event, what, webhook_id, now, why).await);
        };
        let outcome = match self.secrets.secret(&target.secret).await {
            Ok(s) => match WebhookSecret::parse(&s) {
                Ok(secret) => {
                    let payload = self
                        .payload(what, lead.as_ref(), event, &loaded, now)
                        .await?;
                    let timestamp = now.timestamp();
                    let signature = secret.sign(webhook_id, timestamp, &payload);
                    let headers = [
                        (webhook::ID_HEADER, webhook_id.to_owned()),
                        (webhook::TIMESTAMP_HEADER, timestamp.to_string()),
                        (webhook::SIGNATURE_HEADER, signature),
                    ];
                    self.transport
                        .post(&target.endpoint, &headers, payload)
                        .await
                }
                Err(e) => PostOutcome::Failed(format!("secret {}: {e}", target.secret)),
            },
            Err(e) => PostOutcome::Failed(e.to_string()),
        };
        let mut detail = json!({
            "webhook_id": webhook_id,
            "type": kind,
            "attempt": attempt.number,
            "endpoint_host": host_of(&target.endpoint),
            "outcome": outcome.describe(),
        });
        if let PostOutcome::Answered(status) = outcome {
            detail["status"] = json!(status);
        }
        if matches!(outcome, PostOutcome::Answered(401 | 403)) {
            // The CRM may have rotated the secret: the next attempt reads it afresh.
            self.secrets.refresh();
        }
        if outcome.delivered() {
            tracing::info!(lead_id = %lead_id, attempt = attempt.number, kind, "delivered to the CRM");
            self.note(event, now, TimelineAction::CrmDelivered, detail, None)
                .await;
            if let What::Lead { assignment, .. } = what {
                self.mark_delivered(lead_id, assignment, now).await;
            }
            return Ok(true);
        }
        let elapsed = now
            .signed_duration_since(attempt.first_at)
            .max(Duration::zero());
        // A refused endpoint stays refused until the configuration changes: parked at once,
        // for a replay after the fix.
        let refused = matches!(outcome, PostOutcome::Refused(_));
        let next = if refused {
            None
        } else {
            self.settings
                .retry
                .next_delay(attempt.number, elapsed, jitter())
        };
        match next {
            Some(delay) => {
                let secs = delay.num_seconds().max(1) as u32;
                detail["retry_in_seconds"] = json!(secs);
                tracing::warn!(lead_id = %lead_id, attempt = attempt.number, outcome = %outcome.describe(), retry_in = secs, "CRM delivery failed");
                self.note(event, now, TimelineAction::CrmDeliveryAttempt, detail, None)
                    .await;
                if let Some(handle) = m.receipt_handle.as_deref() {
                    if let Err(e) = self.queue.retry_later(handle, secs).await {
                        // The queue's visibility timeout brings it back instead.
                        tracing::warn!(error = %e, "retry delay not set");
                    }
                }
                Err(RecordError::Retryable(format!(
                    "CRM delivery attempt {} failed: {}",
                    attempt.number,
                    outcome.describe()
                )))
            }
            None => {
                let reason = if refused {
                    format!(
                        "{} (config version {}); fix the endpoint, then replay the DLQ",
                        outcome.describe(),
                        loaded.version
                    )
                } else {
                    format!(
                        "gave up after {} attempts over {} s: {}",
                        attempt.number,
                        elapsed.num_seconds(),
                        outcome.describe()
                    )
                };
                self.queue
                    .dead_letter(body, &reason)
                    .await
                    .map_err(RecordError::retryable)?;
                tracing::error!(lead_id = %lead_id, attempts = attempt.number, "CRM delivery given up: parked on the DLQ");
                self.note(
                    event,
                    now,
                    TimelineAction::CrmDeliveryGivenUp,
                    detail,
                    Some(reason),
                )
                .await;
                Ok(false)
            }
        }
    }

    /// Settles a delivery that is not sent, saying why on the timeline: `false`, nothing was
    /// delivered.
    async fn skip(
        &self,
        event: &EventEnvelope,
        what: &What<'_>,
        webhook_id: &str,
        now: DateTime<Utc>,
        why: String,
    ) -> bool {
        let detail = json!({ "webhook_id": webhook_id, "type": what.kind() });
        self.note(
            event,
            now,
            TimelineAction::CrmDeliverySkipped,
            detail,
            Some(why),
        )
        .await;
        false
    }

    /// Records when the CRM took the lead (the end of the system's part of the wait), once,
    /// and only while the handover is the current one. A failure is logged: the delivery
    /// stands.
    async fn mark_delivered(&self, lead: LeadId, handover: &Assignment, now: DateTime<Utc>) {
        let marked = update(&self.store, lead, now, |mut l| {
            let Some(a) = l.assignment.as_mut().filter(|a| {
                a.at == handover.at
                    && a.assigned_to == handover.assigned_to
                    && a.delivered_at.is_none()
            }) else {
                return Ok::<_, Infallible>(Decision::Keep(()));
            };
            a.delivered_at = Some(now);
            Ok(Decision::store(l, Change::default(), ()))
        })
        .await;
        if let Err(e) = marked {
            tracing::warn!(lead_id = %lead, error = %e, "delivery time not recorded");
        }
    }
}

/// What an event asks to deliver.
enum What<'e> {
    /// The lead itself: `lead.routed`, or `lead.offered` for a partner's open offer.
    Lead {
        assignment: &'e Assignment,
        kind: &'static str,
    },
    /// An SLA notice.
    Notice {
        kind: &'static str,
        recipient: Recipient,
        notice: Box<Notice>,
    },
}

impl<'e> What<'e> {
    fn of(event: &'e EventEnvelope, api_url: Option<&str>) -> Option<Self> {
        match &event.event {
            LeadEvent::LeadRouted { assignment } => Some(What::Lead {
                assignment,
                kind: if assignment.is_open_offer() {
                    crm::LEAD_OFFERED
                } else {
                    crm::LEAD_ROUTED
                },
            }),
            // The partner took the offer: now it gets the lead with its contact data.
            LeadEvent::PartnerOfferAccepted { assignment } => Some(What::Lead {
                assignment,
                kind: crm::LEAD_ROUTED,
            }),
            _ => Notice::of(event, api_url).map(|(kind, recipient, notice)| What::Notice {
                kind,
                recipient,
                notice: Box::new(notice),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            What::Lead { kind, .. } | What::Notice { kind, .. } => kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_bounded_and_default_when_unusable() {
        let env = |pairs: &[(&str, &str)]| {
            Env::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let s = DeliverySettings::from_env(&env(&[
            ("CRM_RETRY_BASE_SECONDS", "2"),
            ("CRM_RETRY_WINDOW_SECONDS", "600"),
        ]));
        assert_eq!(s.retry.base, Duration::seconds(2));
        assert_eq!(s.retry.window, Duration::seconds(600));
        let s = DeliverySettings::from_env(&env(&[
            ("CRM_RETRY_BASE_SECONDS", "-1"),
            ("CRM_RETRY_WINDOW_SECONDS", "9223372036854775807"),
        ]));
        assert_eq!(s.retry.base, RetryPolicy::DEFAULT.base);
        assert_eq!(s.retry.window, RetryPolicy::DEFAULT.window);
        let s = DeliverySettings::from_env(&env(&[("CRM_RETRY_WINDOW_SECONDS", "99999999")]));
        assert_eq!(s.retry.window, Duration::days(14));
        assert_eq!(s.api_url, None);
        assert_eq!(
            s.endpoints,
            EndpointMode::Public,
            "a deployment unless told"
        );
        let local = DeliverySettings::from_env(&env(&[("LEADFLOW_LOCAL", "true")]));
        assert_eq!(local.endpoints, EndpointMode::Local);
        let other = DeliverySettings::from_env(&env(&[("LEADFLOW_LOCAL", "no")]));
        assert_eq!(other.endpoints, EndpointMode::Public);
    }

    #[test]
    fn an_attempt_reads_its_number_and_first_receipt_from_sqs() {
        let now = Utc::now();
        let mut m = SqsMessage::default();
        assert_eq!(
            attempt_info(&m, now),
            AttemptInfo {
                number: 1,
                first_at: now
            }
        );
        m.attributes
            .insert("ApproximateReceiveCount".into(), "4".into());
        m.attributes.insert(
            "ApproximateFirstReceiveTimestamp".into(),
            "1795342500100".into(),
        );
        let a = attempt_info(&m, now);
        assert_eq!(a.number, 4);
        assert_eq!(a.first_at.timestamp_millis(), 1_795_342_500_100);
        m.attributes.insert(
            "ApproximateFirstReceiveTimestamp".into(),
            "not a time".into(),
        );
        assert_eq!(attempt_info(&m, now).first_at, now);
    }
}
