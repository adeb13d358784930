//! The ports: what the domain needs from storage and messaging, as small traits. Adapters for
//! DynamoDB and EventBridge live in `leadflow-aws`; handlers are generic over these.

use std::future::Future;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::email::Email;
use crate::events::EventEnvelope;
use crate::lead::{Lead, LeadId};
use crate::routing::RoutingWait;
use crate::timeline::TimelineEntry;

/// What made a store unavailable (an SDK error with its causes, a cancelled transaction).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with all its causes, `outer: inner: innermost`: SDK errors say only "service
/// error" at the top, which tells an operator nothing.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Why a store call failed. Conflicts ([`StoreError::is_conflict`]) are lost races worth an
/// immediate new attempt; `Unavailable` is worth a retry later; `Corrupt` is a bug or damaged
/// data that no retry mends; the others are answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A lead with this e-mail exists already (the e-mail lookup item won the race).
    #[error("a lead with this e-mail exists already")]
    EmailTaken,
    /// Someone else changed the lead since it was read.
    #[error("the lead was changed concurrently (expected version {expected})")]
    VersionConflict { expected: u64 },
    /// The record is being written by a concurrent request.
    #[error("the record is in use by a concurrent request")]
    Busy,
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the store is unavailable: {}", error_chain(.0.as_ref()))]
    Unavailable(#[source] Cause),
}

impl StoreError {
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        StoreError::Unavailable(cause.into())
    }

    /// Lost a race to a concurrent writer: reading again and deciding again may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::EmailTaken | StoreError::VersionConflict { .. } | StoreError::Busy
        )
    }
}

/// One atomic change of a lead: the lead item, its timeline entries and the events to announce
/// (kept in the outbox until published) are written all or nothing.
#[derive(Debug, Clone)]
pub struct LeadWrite {
    pub lead: Lead,
    /// `None` for a new lead; otherwise the version read before the change.
    pub expected_version: Option<u64>,
    pub timeline: Vec<TimelineEntry>,
    pub events: Vec<EventEnvelope>,
}

pub trait LeadStore: Send + Sync {
    fn get(&self, id: LeadId) -> impl Future<Output = Result<Option<Lead>, StoreError>> + Send;
    fn find_by_email(
        &self,
        email: &Email,
    ) -> impl Future<Output = Result<Option<Lead>, StoreError>> + Send;
    /// Writes the change atomically. A new lead fails with `EmailTaken` when its e-mail is known;
    /// an update fails with `VersionConflict` when the stored version is not the expected one.
    fn write(&self, change: &LeadWrite) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn timeline(
        &self,
        id: LeadId,
    ) -> impl Future<Output = Result<Vec<TimelineEntry>, StoreError>> + Send;
    /// Adds entries to the lead's history without changing the lead (e.g. delivery attempts).
    fn append_timeline(
        &self,
        id: LeadId,
        entries: &[TimelineEntry],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("publishing to the event bus failed: {0}")]
pub struct PublishError(pub String);

pub trait EventPublisher: Send + Sync {
    /// Publishes the events; all are on the bus when this returns Ok.
    fn publish(
        &self,
        events: &[EventEnvelope],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// An event waiting in the outbox for its publication.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub event: EventEnvelope,
    pub claimed_until: DateTime<Utc>,
}

/// The transactional outbox: events written with the change that caused them, removed once
/// published. A writer holds a short claim on its own events so the relay does not publish
/// them a second time while the writer is still trying.
pub trait Outbox: Send + Sync {
    /// Up to `limit` events whose claim has expired, oldest first. A sharded store shares
    /// `limit` fairly among its shards, so a backlog in one cannot hide the others' events.
    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;
    /// Takes the claim on an event until `until`; false when someone else holds it or it is gone.
    fn claim(
        &self,
        event_id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes published events.
    fn complete(&self, event_ids: &[Uuid]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A response kept for an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use of the key: go ahead, then `finish`.
    Started,
    /// The key was used with the same request: answer this again.
    Replay(StoredResponse),
    /// The key is in use by a request still running.
    InProgress,
    /// The key was used with a different request body.
    Mismatch,
}

pub trait IdempotencyStore: Send + Sync {
    /// Reserves `key` for a request with this fingerprint, or tells what happened to it before.
    fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<IdempotencyBegin, StoreError>> + Send;
    /// Stores the response for replays within the retention window.
    fn finish(
        &self,
        key: &str,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Releases the key after a failure nobody saw an answer for, so a retry may run.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Operational counters (per UTC day), e.g. honeypot hits.
pub trait Counters: Send + Sync {
    fn increment(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn count(
        &self,
        name: &str,
        day: chrono::NaiveDate,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("queueing failed: {0}")]
pub struct QueueError(pub String);

/// The queue of behavioural events waiting to be scored.
pub trait TrackedEventQueue: Send + Sync {
    /// Enqueues all events; Ok only when every one is on the queue.
    fn enqueue(
        &self,
        events: &[crate::tracking::TrackedEvent],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Where configuration versions are kept.
pub trait ConfigStore: Send + Sync {
    /// The active version, if any was pushed.
    fn active(
        &self,
    ) -> impl Future<Output = Result<Option<crate::config::StoredConfig>, StoreError>> + Send;
    fn version(
        &self,
        version: u64,
    ) -> impl Future<Output = Result<Option<crate::config::StoredConfig>, StoreError>> + Send;
    /// Stores `yaml` as the next version and makes it active. `VersionConflict` when another
    /// push won the race; the caller may retry.
    fn push(
        &self,
        yaml: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<crate::config::StoredConfig, StoreError>> + Send;
}

/// One write of a lead's score, for a batch of its events: the new record (which carries the
/// lead's latest activities and the ids of the events it applied, so a redelivery is
/// recognised), the segment members whose weight moved, and `LeadScored` when it is due.
/// All or nothing, under the version read.
#[derive(Debug, Clone)]
pub struct ScoreWrite {
    pub score: crate::lead_score::LeadScore,
    /// `None` for the lead's first score; otherwise the version read before.
    pub expected_version: Option<u64>,
    /// Segment members to write: the tag and the lead's weight in it at `score.updated_at`.
    pub members: Vec<(String, f64)>,
    pub events: Vec<EventEnvelope>,
}

/// The shard of a lead's segment members: a tag's members are spread over [`KEY_SHARDS`]
/// partitions (`SEG#<tag>#NN`) by [`shard_of`] the lead's id, so a lead's member of a tag is
/// always in the same one.
pub fn segment_shard(lead: LeadId) -> u8 {
    shard_of(lead.as_uuid())
}

pub trait ScoreStore: Send + Sync {
    fn score(
        &self,
        lead: LeadId,
    ) -> impl Future<Output = Result<Option<crate::lead_score::LeadScore>, StoreError>> + Send;
    /// `VersionConflict` when the score changed since it was read (the caller reads it again
    /// and scores its events anew, so a concurrent batch's events are kept and none counts twice).
    fn write_score(
        &self,
        write: &ScoreWrite,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Keeps an event of someone who is not (known as) a lead yet, under `key`: at most
    /// [`crate::anonymous::MAX_EVENTS`] per key (the oldest parked makes room), each until
    /// [`crate::anonymous::MAX_AGE`] after it occurred.
    fn park_anonymous(
        &self,
        key: &str,
        event: &crate::tracking::TrackedEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every readable event kept under `key` (at most [`crate::anonymous::MAX_EVENTS`]).
    fn anonymous_events(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Vec<crate::tracking::TrackedEvent>, StoreError>> + Send;
    /// Up to `limit` events kept under `key`, after `cursor` (a page's [`crate::anonymous::HistoryPage::cursor`]).
    fn anonymous_page(
        &self,
        key: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<crate::anonymous::HistoryPage, StoreError>> + Send;
    /// How far the owner's join of the history under `key` got: the cursor saved last.
    fn join_cursor(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Saves the owner's join progress (only forward, only for the owner `lead`).
    fn save_join_cursor(
        &self,
        key: &str,
        lead: LeadId,
        cursor: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Makes `lead` the owner of the history under `key`, unless another lead owns it; returns the owner.
    fn claim_anonymous(
        &self,
        key: &str,
        lead: LeadId,
    ) -> impl Future<Output = Result<LeadId, StoreError>> + Send;
    fn anonymous_owner(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<LeadId>, StoreError>> + Send;
    /// The lead's latest scored activities by `occurred_at`, newest first (at most
    /// [`crate::lead_score::RECENT_ACTIVITIES`]).
    fn recent_activities(
        &self,
        lead: LeadId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::crm::Activity>, StoreError>> + Send;
    /// One page of a tag's segment in ascending lead id (lead creation) order, after the
    /// cursor of the previous page (the last lead id it listed); the cursor of the next page,
    /// if there may be more.
    fn segment_page(
        &self,
        tag: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<
        Output = Result<(Vec<crate::lead_score::SegmentMember>, Option<String>), StoreError>,
    > + Send;
}

/// The shared state of routing: whose turn it is in a pool, and how many leads an owner got today.
pub trait RoutingState: Send + Sync {
    /// Takes the pool's next turn: 1, 2, 3, ... each number handed out once, however many
    /// routes run at once.
    fn next_turn(&self, pool: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Counts one lead for the owner on `day` unless the cap is reached; false when it is.
    fn take_daily_slot(
        &self,
        owner: &str,
        day: chrono::NaiveDate,
        cap: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives back a slot taken for a lead that was not assigned after all.
    fn release_daily_slot(
        &self,
        owner: &str,
        day: chrono::NaiveDate,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How a CRM's own ids map to leads: written on the CRM's first callback naming both ids.
pub trait CrmLinks: Send + Sync {
    /// Links `external_id` of `crm` to `lead` unless it is linked already; returns the lead it
    /// is linked to.
    fn link_external_id(
        &self,
        crm: &str,
        external_id: &str,
        lead: LeadId,
    ) -> impl Future<Output = Result<LeadId, StoreError>> + Send;
    fn lead_by_external_id(
        &self,
        crm: &str,
        external_id: &str,
    ) -> impl Future<Output = Result<Option<LeadId>, StoreError>> + Send;
}

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The reference names nothing (an unset variable, an unknown secret): a configuration error.
    #[error("secret {0} is not set")]
    Missing(String),
    #[error("secret {reference} could not be read: {reason}")]
    Unavailable { reference: String, reason: String },
}

/// Resolves secret references (`env:NAME`, Secrets Manager ARNs) to their values.
pub trait SecretSource: Send + Sync {
    fn secret(&self, reference: &str) -> impl Future<Output = Result<String, SecretError>> + Send;
    /// Forgets cached values, so the next read sees a rotated secret. Implementations may
    /// limit how often this takes effect (a forged request must not cost a fetch each).
    fn refresh(&self) {}
}

/// The queue a failing delivery waits on: the next attempt comes when the message becomes
/// visible again; after the last, the message is parked on the dead-letter queue.
pub trait RetryQueue: Send + Sync {
    /// Hides the received message (by its receipt handle) for `delay_seconds`.
    fn retry_later(
        &self,
        receipt_handle: &str,
        delay_seconds: u32,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Puts `body` on the dead-letter queue, with why it is there.
    fn dead_letter(
        &self,
        body: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// How many partitions a key that every lead writes is spread over (the SLA due index, the
/// routing waits, the outbox, the stage index): no partition key takes every write, and a
/// reader fans out over all of them (docs/performance.md, "Partition keys at scale").
pub const KEY_SHARDS: u8 = 16;

/// The shard of an id: its last byte, random in a UUIDv4 and in a UUIDv7 (whose counter, if
/// any, sits in the high bits), modulo [`KEY_SHARDS`], so ids spread evenly.
pub fn shard_of(id: Uuid) -> u8 {
    id.as_bytes()[15] % KEY_SHARDS
}

/// How many partitions the SLA due index spreads its entries over: a tick reads them all.
pub const SLA_SHARDS: u8 = KEY_SHARDS;

/// The shard of a lead's keys in the sharded indexes (its due entry, its routing wait, its
/// stage entry): from the random bits of its id, so leads spread evenly.
pub fn sla_shard(id: LeadId) -> u8 {
    shard_of(id.as_uuid())
}

/// A lead whose next SLA step is due, as the due index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueLead {
    pub lead_id: LeadId,
    pub due: DateTime<Utc>,
}

/// The leads whose next SLA step is due: an index by due time (the lead item carries its
/// entry while its ladder runs), sharded by [`sla_shard`].
pub trait SlaDueIndex: Send + Sync {
    /// One page of a shard's leads due at or before `until`, earliest first, after `cursor`
    /// (the last page's cursor); the cursor for the next page, if there may be one.
    fn due_leads(
        &self,
        shard: u8,
        until: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<DueLead>, Option<String>), StoreError>> + Send;
}

/// An owner marked away through the API (vacation), besides the configuration's absences.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Away {
    pub owner: String,
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
    /// Who marked it.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Owners who are away: routing gives them no new leads, and the SLA ladder treats their
/// due leads by their team's policy.
pub trait Availability: Send + Sync {
    /// Every away period set through the API (a handful per team).
    fn absences(&self) -> impl Future<Output = Result<Vec<Away>, StoreError>> + Send;
    /// Sets the owner's away period, replacing one set before.
    fn set_away(&self, away: &Away) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends it; false when none was set.
    fn clear_away(&self, owner: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The buckets of the per-client rate limits ([`crate::rate_limit`]).
pub trait RateLimitStore: Send + Sync {
    /// Spends one token of the bucket `key` under `limit` at `now` (written atomically, so
    /// concurrent requests of one client cannot spend one token twice), or tells how long
    /// until one is free. A refusal changes nothing.
    fn take_token(
        &self,
        key: &crate::rate_limit::ClientKey,
        limit: &crate::rate_limit::RateLimit,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<crate::rate_limit::Verdict, StoreError>> + Send;
}

/// Where parked leads wait (routing decided "later", see `routing::RouteLater`) (the store keeps one entry per lead, listed by `until`).
pub trait RoutingWaits: Send + Sync {
    /// The lead's wait, if it is parked.
    fn routing_wait(
        &self,
        lead: LeadId,
    ) -> impl Future<Output = Result<Option<RoutingWait>, StoreError>> + Send;
    /// Parks the lead (replacing its earlier wait).
    fn park(&self, wait: &RoutingWait) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends `wait`, unless the lead was parked again since (a newer `until`).
    fn end_wait(&self, wait: &RoutingWait) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One page of the waits due at or before `until`, earliest first, after `cursor`; the
    /// cursor of the next page, if there may be one. A sharded store draws each page fairly
    /// from all its shards, and its cursor (opaque to callers) holds each shard's place.
    fn waits_due(
        &self,
        until: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<RoutingWait>, Option<String>), StoreError>> + Send;
}
