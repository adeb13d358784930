//! Scores behavioural events with the active scoring model.
//!
//! Fed by the score-event queue: tracked events from `POST /events`, `LeadCaptured` from the
//! bus (template rule), which joins the visitor's anonymous history to the new lead with the
//! events' original times, and the continuations of joins this function queued itself. Each
//! event is scored at most once: its marker is written in the same transaction as the new
//! score, so a redelivery finds the marker and scores nothing. `LeadScored` is announced only
//! when band, grade or temperature change.
//!
//! # Joining within an invocation's budget
//! A history holds at most `anonymous::MAX_EVENTS` events per key, yet scoring them one by one
//! can take longer than the function's timeout, and a timeout would return the whole batch. So
//! a join reads its history in pages (`anonymous::JOIN_PAGE`), scores each page and saves how
//! far it got on the history's owner item; when the batch's time budget ([`JOIN_BUDGET`]) is
//! spent, it queues a continuation (`{"continue_join": <lead id>}`) and its record succeeds.
//! The continuation is a new message, so a long join never uses up the original message's
//! receives and never reaches the DLQ for being long; it starts from the saved cursor, and a
//! page that was scored in part before a failure is safe to score again (the event markers).
//! A record that fails (unreadable, a failing join) fails only itself: its neighbours in the
//! batch are reported as done (`ReportBatchItemFailures`).

mod continuation;

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::anonymous;
use leadflow_domain::lead_score::LeadScore;
use leadflow_domain::ports::{
    ConfigStore, EventPublisher, LeadStore, Outbox, QueueError, ScoreStore, ScoreWrite, StoreError,
};
use leadflow_domain::scoring::{changed, ApplyStatus, ScoreState};
use leadflow_domain::{EventEnvelope, Lead, LeadEvent, LeadId, TrackedEvent};
use leadflow_lambda::active_config::{ActiveConfig, LoadedConfig};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{until_settled, Attempt, UpdateError};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{for_each_record, lead_of, RecordError};
use leadflow_lambda::wiring::Backend;

pub use continuation::SqsJoinQueue;

/// How long one batch may spend joining histories before the rest is continued in a new
/// message: half of the function's 10 s timeout (template.yaml), which leaves a page in flight
/// (at most [`anonymous::JOIN_PAGE`] events) and the batch's other records room to finish.
pub const JOIN_BUDGET: Duration = Duration::from_secs(5);

/// Where a join that ran out of time goes on: the function's own queue.
pub trait JoinQueue: Send + Sync {
    /// Queues a message that continues `lead`'s join from its saved progress.
    fn continue_join(&self, lead: LeadId) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The body of a continuation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinContinuation {
    pub continue_join: LeadId,
}

/// A serde error without the input it quotes (`invalid type: string "…"`): its category and
/// position only, so no field value of a malformed message reaches the logs or the DLQ reason.
fn shape(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

pub struct ScoreEvent<S, P, Q> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
    joins: Q,
    join_budget: Duration,
}

impl ScoreEvent<DynamoStore, EventBridgePublisher, SqsJoinQueue> {
    /// The table, the bus, and the function's own queue (`SCORE_EVENT_QUEUE_URL`) for
    /// continuations.
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        let joins = SqsJoinQueue::new(aws.sqs(), env.required("SCORE_EVENT_QUEUE_URL")?);
        Ok(Self::new(b.store, b.publisher, b.config, joins))
    }
}

impl<S, P, Q> SqsFunction for ScoreEvent<S, P, Q>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
    Q: JoinQueue,
{
    /// One queue message, with a fresh join budget.
    async fn record(&self, message: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        self.message(message, now, Instant::now() + self.join_budget)
            .await
    }

    /// The batch shares one join budget, so that joins in it together stay within the timeout.
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let deadline = Instant::now() + self.join_budget;
        for_each_record(event, |m| async move {
            self.message(&m, Utc::now(), deadline).await
        })
        .await
    }
}

impl<S, P, Q> ScoreEvent<S, P, Q>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
    Q: JoinQueue,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>, joins: Q) -> Self {
        Self {
            store,
            publisher,
            config,
            joins,
            join_budget: JOIN_BUDGET,
        }
    }

    /// The same function with another join budget per batch.
    pub fn with_join_budget(mut self, budget: Duration) -> Self {
        self.join_budget = budget;
        self
    }

    /// One queue message: a tracked event, an EventBridge envelope (LeadCaptured), or a join's
    /// continuation; joins stop paging at `deadline`.
    async fn message(
        &self,
        message: &SqsMessage,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<(), RecordError> {
        let body = message.body.as_deref().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| RecordError::Poison(format!("not JSON: {}", shape(&e))))?;
        if value.get("detail-type").is_some() {
            let envelope: aws_lambda_events::event::eventbridge::EventBridgeEvent<EventEnvelope> =
                serde_json::from_value(value).map_err(|e| {
                    RecordError::Poison(format!("not a leadflow event: {}", shape(&e)))
                })?;
            return match envelope.detail.event {
                // The event names the lead; its keys (visitor id, e-mail) are in the table.
                LeadEvent::LeadCaptured { .. } => {
                    let lead = lead_of(&self.store, envelope.detail.lead_id).await?;
                    self.join(&lead, now, deadline).await
                }
                _ => Ok(()),
            };
        }
        if value.get("continue_join").is_some() {
            let c: JoinContinuation = serde_json::from_value(value).map_err(|e| {
                RecordError::Poison(format!("not a join continuation: {}", shape(&e)))
            })?;
            let lead = lead_of(&self.store, c.continue_join).await?;
            return self.join(&lead, now, deadline).await;
        }
        let event: TrackedEvent = serde_json::from_value(value)
            .map_err(|e| RecordError::Poison(format!("not a tracked event: {}", shape(&e))))?;
        self.track(&event, now).await
    }

    async fn track(&self, event: &TrackedEvent, now: DateTime<Utc>) -> Result<(), RecordError> {
        if let Some(lead) = self.resolve(event).await? {
            return self.score(&lead, event, now).await;
        }
        let Some(key) = event.identity.anonymous_key() else {
            // Only a lead id, and no such lead: a visitor token from a submission that created
            // no lead (it names an id of no lead on purpose), or a lead since erased. Nothing to
            // score, and nothing a retry or the DLQ would change.
            tracing::info!("event names no lead; not scored");
            return Ok(());
        };
        self.store.park_anonymous(&key, event).await?;
        // A lead may have claimed this history between our look-up and the park: score it now
        // (the event marker makes a second scoring by the join harmless).
        if let Some(owner) = self.store.anonymous_owner(&key).await? {
            if let Some(lead) = self.store.get(owner).await? {
                return self.score(&lead, event, now).await;
            }
        }
        tracing::info!(event_id = %event.event_id, "anonymous event kept until the visitor is identified");
        Ok(())
    }

    async fn resolve(&self, event: &TrackedEvent) -> Result<Option<Lead>, RecordError> {
        let id = &event.identity;
        if let Some(lead_id) = id.lead_id {
            if let Some(lead) = self.store.get(lead_id).await? {
                return Ok(Some(lead));
            }
        }
        if let Some(email) = &id.email {
            if let Some(lead) = self.store.find_by_email(email).await? {
                return Ok(Some(lead));
            }
        }
        if let Some(key) = id.visitor_id.as_ref().and(id.anonymous_key()) {
            if let Some(owner) = self.store.anonymous_owner(&key).await? {
                return Ok(self.store.get(owner).await?);
            }
        }
        Ok(None)
    }

    /// A new lead takes over the anonymous history of its visitor id and e-mail, page by page
    /// from where an earlier delivery stopped; at `deadline` the rest goes to a continuation.
    async fn join(
        &self,
        lead: &Lead,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<(), RecordError> {
        for key in anonymous::keys_of(lead) {
            let owner = self.store.claim_anonymous(&key, lead.id).await?;
            if owner != lead.id {
                tracing::warn!(lead_id = %lead.id, "anonymous history belongs to another lead; not joined");
                continue;
            }
            let mut cursor = self.store.join_cursor(&key).await?;
            loop {
                if Instant::now() >= deadline {
                    self.joins
                        .continue_join(lead.id)
                        .await
                        .map_err(RecordError::retryable)?;
                    tracing::info!(lead_id = %lead.id, "join continues in a new message");
                    return Ok(());
                }
                let page = self
                    .store
                    .anonymous_page(&key, cursor.as_deref(), anonymous::JOIN_PAGE)
                    .await?;
                let fresh: Vec<&TrackedEvent> = page
                    .events
                    .iter()
                    .filter(|e| !anonymous::is_expired(e, now))
                    .collect();
                if !fresh.is_empty() {
                    tracing::info!(lead_id = %lead.id, events = fresh.len(), "joining anonymous history");
                }
                if page.unreadable > 0 {
                    tracing::warn!(lead_id = %lead.id, unreadable = page.unreadable, "unreadable parked events skipped");
                }
                for event in fresh {
                    self.score(lead, event, now).await?;
                }
                let Some(last) = page.cursor else { break };
                self.store.save_join_cursor(&key, lead.id, &last).await?;
                cursor = Some(last);
                if !page.more {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Scores one event for the lead, at most once.
    pub async fn score(
        &self,
        lead: &Lead,
        event: &TrackedEvent,
        now: DateTime<Utc>,
    ) -> Result<(), RecordError> {
        let loaded = self.config.get().await.map_err(RecordError::retryable)?;
        let events = until_settled(&mut ScoreAttempt {
            store: &self.store,
            loaded: &loaded,
            lead,
            event,
            now,
        })
        .await?;
        deliver(&self.store, &self.publisher, &events).await;
        Ok(())
    }
}

/// One attempt at scoring an event: read the lead's score, apply the event, write the score
/// under the version read (with the event's marker, its activity and segment memberships).
struct ScoreAttempt<'a, S> {
    store: &'a S,
    loaded: &'a LoadedConfig,
    lead: &'a Lead,
    event: &'a TrackedEvent,
    now: DateTime<Utc>,
}

impl<S: ScoreStore> Attempt for ScoreAttempt<'_, S> {
    /// The events written to the outbox, to publish.
    type Output = Vec<EventEnvelope>;
    type Error = Infallible;

    async fn attempt(&mut self) -> Result<Vec<EventEnvelope>, UpdateError<Infallible>> {
        let (lead, event, now) = (self.lead, self.event, self.now);
        let model = &self.loaded.config.scoring;
        let existing = self.store.score(lead.id).await?;
        let mut record = existing
            .clone()
            .unwrap_or_else(|| LeadScore::new(lead.id, now));
        let applied = record.state.apply(model, &event.behaviour());
        match applied.status {
            ApplyStatus::Applied => {}
            ApplyStatus::Duplicate => return Ok(Vec::new()),
            ApplyStatus::Expired => {
                tracing::info!(event_id = %event.event_id, "event older than the score's horizon; not scored");
                return Ok(Vec::new());
            }
        }
        let fit = lead.fit_profile();
        let snapshot = record.state.snapshot(model, &fit, now);
        let previous = record
            .snapshot
            .clone()
            .unwrap_or_else(|| ScoreState::default().snapshot(model, &fit, now));
        let mut events = Vec::new();
        if changed(&previous, &snapshot) {
            events.push(EventEnvelope::new(
                lead.id,
                now,
                LeadEvent::LeadScored {
                    score: snapshot.score,
                    band: snapshot.band,
                    grade: snapshot.grade,
                    temperature: snapshot.temperature,
                    product: snapshot.product.clone(),
                    config_version: self.loaded.version,
                },
            ));
        }
        let weights = record.state.interests(model, now);
        let interests = event
            .tags
            .iter()
            .filter_map(|t| weights.get(t.as_str()).map(|w| (t.to_string(), *w)))
            .collect();
        record.snapshot = Some(snapshot);
        record.config_version = self.loaded.version;
        record.updated_at = now;
        record.version += 1;
        let write = ScoreWrite {
            score: record,
            expected_version: existing.map(|r| r.version),
            event: event.clone(),
            applied: serde_json::to_value(&applied).unwrap_or_default(),
            events,
            interests,
        };
        match self.store.write_score(&write).await {
            Ok(()) => Ok(write.events),
            // Scored by a concurrent delivery of the same event.
            Err(StoreError::AlreadyProcessed) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_message_is_described_without_its_values() {
        let body = r#"{"event_id": 4711, "type": "page_view", "visitor_id": "v-secret-42"}"#;
        let err = serde_json::from_str::<TrackedEvent>(body).unwrap_err();
        assert!(err.to_string().contains("4711"), "serde quotes the value");
        let described = shape(&err);
        assert!(!described.contains("4711") && !described.contains("v-secret-42"));
        assert!(described.starts_with("Data error at line 1"), "{described}");
    }

    #[test]
    fn a_continuation_is_told_apart_from_events_and_envelopes() {
        let lead = LeadId::new_at(Utc::now());
        let body = serde_json::to_value(JoinContinuation {
            continue_join: lead,
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"continue_join": lead.to_string()}));
        assert!(body.get("detail-type").is_none());
        assert!(serde_json::from_value::<TrackedEvent>(body).is_err());
    }
}
