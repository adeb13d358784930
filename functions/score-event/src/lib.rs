//! Scores behavioural events with the active scoring model.
//!
//! Fed by the score-event queue: tracked events from `POST /events`, and `LeadCaptured` from
//! the bus (template rule), which joins the visitor's anonymous history to the new lead with
//! the events' original times. Each event is scored at most once: its marker is written in the
//! same transaction as the new score, so a redelivery finds the marker and scores nothing.
//! `LeadScored` is announced only when band, grade or temperature change.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::lead_score::LeadScore;
use leadflow_domain::ports::{
    ConfigStore, EventPublisher, LeadStore, Outbox, ScoreStore, ScoreWrite, StoreError,
};
use leadflow_domain::scoring::{changed, ApplyStatus, ScoreState};
use leadflow_domain::{EventEnvelope, Lead, LeadEvent, TrackedEvent};
use leadflow_lambda::active_config::{ActiveConfig, LoadedConfig};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{until_settled, Attempt, UpdateError};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{leadflow_event, RecordError};
use leadflow_lambda::wiring::Backend;

pub struct ScoreEvent<S, P> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
}

impl ScoreEvent<DynamoStore, EventBridgePublisher> {
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        Ok(Self::new(b.store, b.publisher, b.config))
    }
}

impl<S, P> SqsFunction for ScoreEvent<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
{
    /// One queue message: a tracked event, or an EventBridge envelope (LeadCaptured).
    async fn record(&self, message: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        let body = message.body.as_deref().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| RecordError::Poison(format!("not JSON: {e}")))?;
        if value.get("detail-type").is_some() {
            return match leadflow_event(body)?.event {
                LeadEvent::LeadCaptured { lead } => self.join(&lead, now).await,
                _ => Ok(()),
            };
        }
        let event: TrackedEvent = serde_json::from_value(value)
            .map_err(|e| RecordError::Poison(format!("not a tracked event: {e}")))?;
        self.track(&event, now).await
    }
}

impl<S, P> ScoreEvent<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }

    async fn track(&self, event: &TrackedEvent, now: DateTime<Utc>) -> Result<(), RecordError> {
        if let Some(lead) = self.resolve(event).await? {
            return self.score(&lead, event, now).await;
        }
        let Some(key) = event.identity.anonymous_key() else {
            // Only a lead id, and no such lead: nothing to attach it to. Kept in the DLQ.
            return Err(RecordError::Poison(format!(
                "event {} names an unknown lead",
                event.event_id
            )));
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

    /// A new lead takes over the anonymous history of its visitor id and e-mail.
    async fn join(&self, lead: &Lead, now: DateTime<Utc>) -> Result<(), RecordError> {
        let keys = [
            lead.visitor_id.as_ref().map(|v| format!("visitor:{v}")),
            Some(format!("email:{}", lead.email)),
        ];
        for key in keys.into_iter().flatten() {
            let owner = self.store.claim_anonymous(&key, lead.id).await?;
            if owner != lead.id {
                tracing::warn!(lead_id = %lead.id, "anonymous history belongs to another lead; not joined");
                continue;
            }
            let events = self.store.anonymous_events(&key).await?;
            if !events.is_empty() {
                tracing::info!(lead_id = %lead.id, events = events.len(), "joining anonymous history");
            }
            for event in &events {
                self.score(lead, event, now).await?;
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
