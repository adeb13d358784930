//! Delivery of outbox events to the bus.
//!
//! A change and its events are written in one DynamoDB transaction (the events as outbox
//! items). The writer then publishes them at once and removes them. If publishing fails, the
//! items stay; the scheduled relay publishes them once the writer's claim has expired. Delivery
//! is therefore at least once; a duplicate is possible only when publishing succeeded and the
//! removal then failed, and consumers deduplicate on `event_id`.

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::ports::{EventPublisher, Outbox, StoreError};
use leadflow_domain::EventEnvelope;

/// How long the relay owns the events it is publishing.
pub const RELAY_CLAIM: Duration = Duration::seconds(60);
/// Events the relay takes per run.
pub const RELAY_BATCH: usize = 100;

/// What happened to freshly written events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Published,
    /// Left in the outbox for the relay.
    Deferred,
}

/// Publishes events the caller has just written to the outbox, and removes them on success.
/// Never fails: whatever did not get through is the relay's job.
pub async fn deliver<O: Outbox, P: EventPublisher>(
    outbox: &O,
    publisher: &P,
    events: &[EventEnvelope],
) -> Delivery {
    if events.is_empty() {
        return Delivery::Published;
    }
    if let Err(err) = publisher.publish(events).await {
        tracing::warn!(error = %err, events = events.len(), "publish failed; the outbox relay will retry");
        return Delivery::Deferred;
    }
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    if let Err(err) = outbox.complete(&ids).await {
        tracing::warn!(error = %err, "published, but the outbox entries stay; the relay may publish them again");
    }
    Delivery::Published
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    /// Events another relay or the writer holds.
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("outbox relay: {0}")]
pub struct RelayError(#[from] pub StoreError);

/// Publishes every outbox event whose claim has expired at `now`.
pub async fn relay<O: Outbox, P: EventPublisher>(
    outbox: &O,
    publisher: &P,
    now: DateTime<Utc>,
) -> Result<RelayReport, RelayError> {
    let mut report = RelayReport::default();
    let due = outbox.due(now, RELAY_BATCH).await?;
    let mut claimed = Vec::with_capacity(due.len());
    for entry in due {
        if outbox
            .claim(entry.event.event_id, now, now + RELAY_CLAIM)
            .await?
        {
            claimed.push(entry.event);
        } else {
            report.skipped += 1;
        }
    }
    for chunk in claimed.chunks(10) {
        match publisher.publish(chunk).await {
            Ok(()) => {
                let ids: Vec<_> = chunk.iter().map(|e| e.event_id).collect();
                outbox.complete(&ids).await?;
                report.published += chunk.len();
            }
            Err(err) => {
                tracing::warn!(error = %err, events = chunk.len(), "relay publish failed; retried when the claim expires");
                report.failed += chunk.len();
            }
        }
    }
    Ok(report)
}
