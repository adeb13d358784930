//! Scores behavioural events with the active scoring model.
//!
//! Fed by the score-event queue: tracked events from `POST /events`, `LeadCaptured` from the
//! bus (template rule), which joins the visitor's anonymous history to the new lead with the
//! events' original times, and the continuations of joins this function queued itself.
//!
//! # One write per lead per batch
//! The tracked events of a batch are grouped by lead, and each lead's events are scored
//! together: one read of its score record, one snapshot, one conditional write of the record
//! (with the segment members whose weight moved and `LeadScored`, if due, in the same
//! transaction). The record keeps the ids of the events it applied lately and the lead's latest
//! activities, so each event is scored at most once: a redelivery, or the same event in a
//! concurrent batch, finds its id in the record it reads, and a write that lost a race to
//! another batch fails its version condition and is scored anew on the record that won
//! (`LeadScore::score_batch`). `LeadScored` is announced only when band, grade or temperature
//! change over the batch.
//!
//! # Joining within an invocation's budget
//! A history holds at most `anonymous::MAX_EVENTS` events per key, yet scoring them one by one
//! can take longer than the function's timeout, and a timeout would return the whole batch. So
//! a join reads its history in pages (`anonymous::JOIN_PAGE`), scores each page and saves how
//! far it got on the history's owner item; when the batch's time budget ([`JOIN_BUDGET`]) is
//! spent, it queues a continuation (`{"continue_join": <lead id>}`) and its record succeeds.
//! The continuation is a new message, so a long join never uses up the original message's
//! receives and never reaches the DLQ for being long; it starts from the saved cursor, and a
//! page that was scored before a failure is safe to score again (the ids in the score record).
//! A record that fails (unreadable, a failing join) fails only itself, and a lead whose
//! scoring fails fails only its own records: their neighbours in the batch are reported as done
//! (`ReportBatchItemFailures`).

mod continuation;

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::anonymous;
use leadflow_domain::lead_score::LeadScore;
use leadflow_domain::ports::{
    Availability, ConfigStore, EventPublisher, LeadStore, Outbox, QueueError, RoutingState,
    RoutingWaits, ScoreStore, ScoreWrite,
};
use leadflow_domain::{EventEnvelope, Lead, LeadEvent, LeadId, TrackedEvent};
use leadflow_lambda::active_config::{ActiveConfig, LoadedConfig};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{until_settled, Attempt, UpdateError};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{lead_of, RecordError};
use leadflow_lambda::wiring::Backend;
use qualify::Qualify;

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

/// What follows a lead's scoring in the same invocation: in the deployed function,
/// qualification and routing ([`QualifyAndRoute`]; why: docs/performance.md, "Latency
/// budget"); nothing (`()`) where only scoring is under test.
pub trait AfterScoring: Send + Sync {
    /// Runs after `lead`'s events were scored at `now`, when its standing may have changed.
    fn after_scoring(
        &self,
        lead: LeadId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;
}

impl AfterScoring for () {
    async fn after_scoring(&self, _: LeadId, _: DateTime<Utc>) -> Result<(), RecordError> {
        Ok(())
    }
}

impl<S, P> AfterScoring for QualifyAndRoute<S, P>
where
    S: LeadStore
        + ScoreStore
        + Outbox
        + ConfigStore
        + RoutingState
        + Availability
        + RoutingWaits
        + Clone
        + Send
        + Sync,
    P: EventPublisher + Clone + Send + Sync,
{
    async fn after_scoring(&self, lead: LeadId, now: DateTime<Utc>) -> Result<(), RecordError> {
        // On the heap: routing's future is large, and it sits inside every scoring and join
        // future of a batch (a debug build overflowed a thread's stack without this).
        Box::pin(self.run(lead, now)).await
    }
}

/// Qualification, then routing of a lead that awaits it, in one invocation (see the module's
/// comment): what score-event runs after scoring a lead.
pub struct QualifyAndRoute<S, P> {
    qualify: Qualify<S, P>,
    route: route::Route<S, P>,
}

impl<S, P> QualifyAndRoute<S, P>
where
    S: LeadStore
        + ScoreStore
        + Outbox
        + ConfigStore
        + RoutingState
        + Availability
        + RoutingWaits
        + Clone,
    P: EventPublisher + Clone,
{
    /// Both steps on one store, bus and configuration cache.
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>) -> Self {
        Self {
            qualify: Qualify::new(store.clone(), publisher.clone(), config.clone()),
            route: route::Route::new(store, publisher, config),
        }
    }

    /// Qualifies the lead at `now` and routes it if it awaits routing.
    pub async fn run(&self, lead_id: LeadId, now: DateTime<Utc>) -> Result<(), RecordError> {
        if let Some(lead) = self.qualify.qualify(lead_id, now).await? {
            self.route.route_read(lead, now).await?;
        }
        Ok(())
    }
}

pub struct ScoreEvent<S, P, Q, N = ()> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
    joins: Q,
    join_budget: Duration,
    next: N,
}

/// The deployed function: scoring, then qualification and routing.
pub type ScoreQualifyRoute = ScoreEvent<
    DynamoStore,
    EventBridgePublisher,
    SqsJoinQueue,
    QualifyAndRoute<DynamoStore, EventBridgePublisher>,
>;

impl ScoreQualifyRoute {
    /// The table, the bus, and the function's own queue (`SCORE_EVENT_QUEUE_URL`) for
    /// continuations; qualification and routing share the store, the bus and the cached
    /// configuration.
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        let joins = SqsJoinQueue::new(aws.sqs(), env.required("SCORE_EVENT_QUEUE_URL")?);
        let next = QualifyAndRoute::new(b.store.clone(), b.publisher.clone(), b.config.clone());
        Ok(ScoreEvent::new(b.store, b.publisher, b.config, joins).then(next))
    }
}

impl<S, P, Q, N> SqsFunction for ScoreEvent<S, P, Q, N>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
    Q: JoinQueue,
    N: AfterScoring,
{
    /// One queue message, with a fresh join budget.
    async fn record(&self, message: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        let deadline = Instant::now() + self.join_budget;
        let mut results = self
            .messages(std::slice::from_ref(message), now, deadline)
            .await;
        results.pop().unwrap_or(Ok(()))
    }

    /// The batch shares one join budget, so that joins in it together stay within the timeout,
    /// and each lead's tracked events in it are scored with one write.
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let deadline = Instant::now() + self.join_budget;
        let results = self.messages(&event.records, Utc::now(), deadline).await;
        let mut response = SqsBatchResponse::default();
        for (message, result) in event.records.iter().zip(results) {
            if let Err(err) = result {
                let id = message.message_id.clone().unwrap_or_default();
                tracing::warn!(message_id = %id, error = %err, "record failed");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

/// A future's result, or a failure of its own if it panics: one record (or one lead's records)
/// fails, not the invocation and with it every record of the batch. The future is dropped after
/// a panic, so no state it touched is reused.
async fn isolated<T>(f: impl Future<Output = Result<T, RecordError>>) -> Result<T, RecordError> {
    match AssertUnwindSafe(f).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!("record handler panicked");
            Err(RecordError::Retryable("the handler panicked".into()))
        }
    }
}

impl<S, P, Q> ScoreEvent<S, P, Q>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
    Q: JoinQueue,
{
    /// Scoring alone.
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>, joins: Q) -> Self {
        Self {
            store,
            publisher,
            config,
            joins,
            join_budget: JOIN_BUDGET,
            next: (),
        }
    }

    /// The same function, running `next` after each lead's scoring.
    pub fn then<N: AfterScoring>(self, next: N) -> ScoreEvent<S, P, Q, N> {
        ScoreEvent {
            store: self.store,
            publisher: self.publisher,
            config: self.config,
            joins: self.joins,
            join_budget: self.join_budget,
            next,
        }
    }
}

impl<S, P, Q, N> ScoreEvent<S, P, Q, N>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
    Q: JoinQueue,
    N: AfterScoring,
{
    /// The same function with another join budget per batch.
    pub fn with_join_budget(mut self, budget: Duration) -> Self {
        self.join_budget = budget;
        self
    }

    /// The batch's messages, with one result each (in order): first every message on its own
    /// (joins, continuations, parked events, and finding the lead of each tracked event), then
    /// each lead's tracked events together. Joins stop paging at `deadline`.
    async fn messages(
        &self,
        messages: &[SqsMessage],
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Vec<Result<(), RecordError>> {
        let mut results = Vec::with_capacity(messages.len());
        // Per lead, in order of first appearance: the lead, its events and their messages.
        let mut leads: Vec<(Lead, Vec<TrackedEvent>, Vec<usize>)> = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            match isolated(self.message(message, now, deadline)).await {
                Ok(Some((lead, event))) => {
                    match leads.iter_mut().find(|(l, _, _)| l.id == lead.id) {
                        Some((_, events, indices)) => {
                            events.push(event);
                            indices.push(i);
                        }
                        None => leads.push((lead, vec![event], vec![i])),
                    }
                    results.push(Ok(()));
                }
                Ok(None) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        for (lead, events, indices) in leads {
            let scored = async {
                if self.score(&lead, &events, now).await? {
                    self.next.after_scoring(lead.id, now).await?;
                }
                Ok(())
            };
            if let Err(e) = isolated(scored).await {
                for i in indices {
                    results[i] = Err(match &e {
                        RecordError::Poison(m) => RecordError::Poison(m.clone()),
                        RecordError::Retryable(m) => RecordError::Retryable(m.clone()),
                    });
                }
            }
        }
        results
    }

    /// One queue message: a tracked event, an EventBridge envelope (LeadCaptured), or a join's
    /// continuation; joins stop paging at `deadline`. A tracked event of a lead comes back with
    /// its lead, to be scored with the lead's other events of the batch.
    async fn message(
        &self,
        message: &SqsMessage,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Option<(Lead, TrackedEvent)>, RecordError> {
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
                    self.join(&lead, now, deadline).await.map(|()| None)
                }
                _ => Ok(None),
            };
        }
        if value.get("continue_join").is_some() {
            let c: JoinContinuation = serde_json::from_value(value).map_err(|e| {
                RecordError::Poison(format!("not a join continuation: {}", shape(&e)))
            })?;
            let lead = lead_of(&self.store, c.continue_join).await?;
            return self.join(&lead, now, deadline).await.map(|()| None);
        }
        let event: TrackedEvent = serde_json::from_value(value)
            .map_err(|e| RecordError::Poison(format!("not a tracked event: {}", shape(&e))))?;
        Ok(self.track(&event).await?.map(|lead| (lead, event)))
    }

    /// The lead to score a tracked event for, or none: the event is parked as anonymous
    /// history (or names no lead at all).
    async fn track(&self, event: &TrackedEvent) -> Result<Option<Lead>, RecordError> {
        if let Some(lead) = self.resolve(event).await? {
            return Ok(Some(lead));
        }
        let Some(key) = event.identity.anonymous_key() else {
            // Only a lead id, and no such lead: a visitor token from a submission that created
            // no lead (it names an id of no lead on purpose), or a lead since erased. Nothing to
            // score, and nothing a retry or the DLQ would change.
            tracing::info!("event names no lead; not scored");
            return Ok(None);
        };
        self.store.park_anonymous(&key, event).await?;
        // A lead may have claimed this history between our look-up and the park: score it now
        // (the ids kept in the score record make a second scoring by the join harmless).
        if let Some(owner) = self.store.anonymous_owner(&key).await? {
            if let Some(lead) = self.store.get(owner).await? {
                return Ok(Some(lead));
            }
        }
        tracing::info!(event_id = %event.event_id, "anonymous event kept until the visitor is identified");
        Ok(None)
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
        let mut standing_may_change = false;
        let joined = self
            .join_pages(lead, now, deadline, &mut standing_may_change)
            .await;
        if standing_may_change {
            self.next.after_scoring(lead.id, now).await?;
        }
        joined
    }

    async fn join_pages(
        &self,
        lead: &Lead,
        now: DateTime<Utc>,
        deadline: Instant,
        standing_may_change: &mut bool,
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
                let fresh: Vec<TrackedEvent> = page
                    .events
                    .into_iter()
                    .filter(|e| !anonymous::is_expired(e, now))
                    .collect();
                if !fresh.is_empty() {
                    tracing::info!(lead_id = %lead.id, events = fresh.len(), "joining anonymous history");
                }
                if page.unreadable > 0 {
                    tracing::warn!(lead_id = %lead.id, unreadable = page.unreadable, "unreadable parked events skipped");
                }
                // The page in one write (a page re-read after a failure scores nothing twice).
                *standing_may_change |= self.score(lead, &fresh, now).await?;
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

    /// Scores the lead's events (each at most once) with one write of its score, unless they
    /// change nothing. True when the lead's standing may have changed, so that qualification
    /// must look: `LeadScored` was announced, or every event had been scored before (a
    /// redelivery, whose first delivery may have stopped before qualifying and routing).
    pub async fn score(
        &self,
        lead: &Lead,
        events: &[TrackedEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, RecordError> {
        if events.is_empty() {
            return Ok(false);
        }
        let loaded = self.config.get().await.map_err(RecordError::retryable)?;
        let scored = until_settled(&mut ScoreAttempt {
            store: &self.store,
            loaded: &loaded,
            lead,
            events,
            now,
        })
        .await?;
        deliver(&self.store, &self.publisher, &scored.events).await;
        Ok(scored.standing_may_change)
    }
}

/// One attempt at scoring a lead's events: read the lead's score, apply the events it has not
/// applied yet, write the score under the version read (with the segment members whose weight
/// moved and `LeadScored` if due). A lost race reads the winner's record and starts over.
struct ScoreAttempt<'a, S> {
    store: &'a S,
    loaded: &'a LoadedConfig,
    lead: &'a Lead,
    events: &'a [TrackedEvent],
    now: DateTime<Utc>,
}

/// What a scoring attempt wrote.
struct Scored {
    /// The events written to the outbox, to publish.
    events: Vec<EventEnvelope>,
    /// See [`ScoreEvent::score`].
    standing_may_change: bool,
}

impl<S: ScoreStore> Attempt for ScoreAttempt<'_, S> {
    type Output = Scored;
    type Error = Infallible;

    async fn attempt(&mut self) -> Result<Scored, UpdateError<Infallible>> {
        let (lead, now) = (self.lead, self.now);
        let model = &self.loaded.config.scoring;
        let existing = self.store.score(lead.id).await?;
        let expected_version = existing.as_ref().map(|r| r.version);
        let mut record = existing.unwrap_or_else(|| LeadScore::new(lead.id, now));
        let scored = record.score_batch(
            model,
            &lead.fit_profile(),
            self.loaded.version,
            self.events,
            now,
        );
        if scored.expired > 0 {
            tracing::info!(lead_id = %lead.id, expired = scored.expired, "events older than the score's horizon; not scored");
        }
        if scored.duplicates > 0 {
            tracing::info!(lead_id = %lead.id, duplicates = scored.duplicates, "events scored before; not scored again");
        }
        if !scored.changed {
            return Ok(Scored {
                events: Vec::new(),
                standing_may_change: true,
            });
        }
        let events = scored
            .announce
            .map(|snapshot| {
                vec![EventEnvelope::new(
                    lead.id,
                    now,
                    LeadEvent::LeadScored {
                        score: snapshot.score,
                        band: snapshot.band,
                        grade: snapshot.grade,
                        temperature: snapshot.temperature,
                        product: snapshot.product,
                        config_version: self.loaded.version,
                    },
                )]
            })
            .unwrap_or_default();
        let write = ScoreWrite {
            score: record,
            expected_version,
            members: scored.members,
            events,
        };
        self.store.write_score(&write).await?;
        Ok(Scored {
            standing_may_change: !write.events.is_empty(),
            events: write.events,
        })
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
