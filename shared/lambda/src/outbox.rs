//! Delivery of outbox events to the bus.
//!
//! A change and its events are written in one DynamoDB transaction (the events as outbox
//! items). The writer then publishes them at once and removes them. If publishing fails, the
//! items stay; the scheduled relay publishes them once the writer's claim has expired. Delivery
//! is therefore at least once. A duplicate is possible when publishing succeeded but the removal
//! failed, when a publish timed out after reaching the bus, or when a batch failed in part (the
//! whole batch is retried); consumers deduplicate on `event_id` (docs/data-model.md).

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::ports::{EventPublisher, Outbox, StoreError};
use leadflow_domain::EventEnvelope;

/// How long the relay owns the events it is publishing.
pub const RELAY_CLAIM: Duration = Duration::seconds(60);
/// Events the relay takes per round.
pub const RELAY_BATCH: usize = 100;
/// Rounds per run: a backlog left by an outage drains at up to 1,000 events a run, not 100.
pub const RELAY_ROUNDS: usize = 10;

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

/// Publishes every outbox event whose claim has expired at `now`, up to `RELAY_ROUNDS` rounds
/// of `RELAY_BATCH`. Each round's page comes from every shard of the outbox (`Outbox::due`
/// shares it among them), so a backlog in one shard does not hold back the others' events.
pub async fn relay<O: Outbox, P: EventPublisher>(
    outbox: &O,
    publisher: &P,
    now: DateTime<Utc>,
) -> Result<RelayReport, RelayError> {
    let mut report = RelayReport::default();
    for _ in 0..RELAY_ROUNDS {
        let due = outbox.due(now, RELAY_BATCH).await?;
        let full_round = due.len() == RELAY_BATCH;
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
        let mut failed = false;
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
                    failed = true;
                }
            }
        }
        // Claimed events no longer count as due, so a full round means more may wait.
        if !full_round || failed {
            break;
        }
    }
    Ok(report)
}
