//! Queue pollers that behave like Lambda's SQS event source mappings: receive up to the batch
//! size, invoke the function with an SQS event, delete what succeeded, and leave the reported
//! failures on the queue, where the queue's redrive policy moves them to the DLQ after
//! `maxReceiveCount` receives. Like a mapping, a poller works on several batches at once: as
//! many as the mapping's `ScalingConfig.MaximumConcurrency`, or [`DEFAULT_CONCURRENCY`] (the
//! five batches Lambda starts a standard queue's mapping with) where the template sets none.
//!
//! For the soak (docs/performance.md, "Soak with faults") a poller can also deliver every
//! message twice, in the two shapes SQS produces ([`DeliveryFaults`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use aws_sdk_sqs::Client;

use crate::functions::SqsHandler;
use crate::manifest::QueueSource;

/// Batches a poller works on at once when the mapping names no `MaximumConcurrency`.
pub const DEFAULT_CONCURRENCY: u32 = 5;

/// How long a poller's spare loops rest after finding their queue empty.
const SPARE_LOOP_REST: Duration = Duration::from_secs(2);

pub struct Poller {
    pub client: Client,
    pub source: QueueSource,
    pub queue_arn: String,
    pub handler: SqsHandler,
}

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
}

/// Faults a poller injects on purpose, for the soak. SQS delivers at least once; a duplicate
/// comes in one of two shapes, and with `duplicates` every message meets one of them,
/// alternately by batch:
/// - **redelivered**: the function succeeds, but instead of being deleted the message is made
///   visible again (as when a delete is lost or the visibility timeout ends first), so it comes
///   back through the queue in a later batch, among other messages, and is deleted then;
/// - **concurrent**: the batch is handed to two invocations at once (as two pollers receive a
///   message whose visibility timeout ended while the first was still at work); a message is
///   deleted if either invocation succeeded with it.
///
/// `visibility_timeout` replaces the queue's for every receive: a failed message (a poison
/// one) comes back sooner, so its `maxReceiveCount` receives take seconds, not the template's
/// minutes. Nothing else changes: the redrive to the DLQ is the queue's own.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFaults {
    pub duplicates: bool,
    pub visibility_timeout: Option<Duration>,
    /// Counters shared by every poller given these faults.
    pub stats: Arc<DeliveryStats>,
}

/// What pollers with [`DeliveryFaults`] did, summed over their queues.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub batches: AtomicU64,
    /// Messages received (each receive of a message counts).
    pub received: AtomicU64,
    /// Messages handed to the function a second time: made visible again after a success.
    pub redelivered: AtomicU64,
    /// Messages handed to a second, concurrent invocation.
    pub concurrent: AtomicU64,
    /// Receives the function reported as failed.
    pub failed: AtomicU64,
    /// Batches with at least one failed message.
    pub batches_with_failures: AtomicU64,
    /// The other messages of those batches that succeeded all the same.
    pub succeeded_beside_failures: AtomicU64,
}

/// A plain-number copy of [`DeliveryStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub batches: u64,
    pub received: u64,
    pub redelivered: u64,
    pub concurrent: u64,
    pub failed: u64,
    pub batches_with_failures: u64,
    pub succeeded_beside_failures: u64,
}

impl DeliveryStats {
    pub fn counts(&self) -> DeliveryCounts {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliveryCounts {
            batches: n(&self.batches),
            received: n(&self.received),
            redelivered: n(&self.redelivered),
            concurrent: n(&self.concurrent),
            failed: n(&self.failed),
            batches_with_failures: n(&self.batches_with_failures),
            succeeded_beside_failures: n(&self.succeeded_beside_failures),
        }
    }
}

/// How a batch is duplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Once,
    Redelivered,
    Concurrent,
}

/// A poller's memory across batches (shared by its concurrent loops): which messages were
/// already made visible again, so that their second delivery is deleted rather than repeated
/// forever.
#[derive(Default)]
struct FaultState {
    batches: u64,
    redelivered: HashSet<String>,
}

/// The ids a response reports as failed. Without ReportBatchItemFailures, any failure fails
/// the whole batch, as in Lambda.
fn failed_ids<'a>(
    source: &QueueSource,
    response: &'a SqsBatchResponse,
    messages: &'a [Message],
) -> HashSet<&'a str> {
    if source.report_batch_item_failures || response.batch_item_failures.is_empty() {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    } else {
        messages.iter().filter_map(|m| m.message_id()).collect()
    }
}

impl Poller {
    /// Receives one batch (waiting up to `wait` for messages) and invokes the function with it.
    pub async fn poll_once(&self, wait: Duration) -> Result<PollOutcome, String> {
        self.poll(wait, None, &Mutex::default()).await
    }

    fn record(&self, m: &Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id().map(str::to_owned);
        r.receipt_handle = m.receipt_handle().map(str::to_owned);
        r.body = m.body().map(str::to_owned);
        r.md5_of_body = m.md5_of_body().map(str::to_owned);
        r.attributes = m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(self.queue_arn.clone());
        r.aws_region = Some(crate::LOCAL_REGION.into());
        r
    }

    async fn poll(
        &self,
        wait: Duration,
        faults: Option<&DeliveryFaults>,
        state: &Mutex<FaultState>,
    ) -> Result<PollOutcome, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.source.queue_url)
            .max_number_of_messages(self.source.batch_size.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(
                faults
                    .and_then(|f| f.visibility_timeout)
                    .map(|v| v.as_secs().clamp(1, 43_200) as i32),
            )
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("receive from {}: {e:?}", self.source.queue_logical_id))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        let (shape, fresh) = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let shape = match faults {
                Some(f) if f.duplicates => {
                    state.batches += 1;
                    if state.batches.is_multiple_of(2) {
                        Shape::Concurrent
                    } else {
                        Shape::Redelivered
                    }
                }
                _ => Shape::Once,
            };
            // A message back for its second delivery is not duplicated again.
            let fresh: HashSet<&str> = messages
                .iter()
                .filter_map(|m| m.message_id())
                .filter(|id| shape != Shape::Once && !state.redelivered.contains(*id))
                .collect();
            (shape, fresh)
        };
        let is_fresh = |m: &Message| m.message_id().is_some_and(|id| fresh.contains(id));
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.record(m)).collect();
        let (response, second) = if shape == Shape::Concurrent && !fresh.is_empty() {
            let mut twin = SqsEvent::default();
            twin.records = messages
                .iter()
                .filter(|m| is_fresh(m))
                .map(|m| self.record(m))
                .collect();
            let (a, b) = tokio::join!((self.handler)(event), (self.handler)(twin));
            (a, Some(b))
        } else {
            ((self.handler)(event).await, None)
        };
        let failed = failed_ids(&self.source, &response, messages);
        // Deleted if either invocation succeeded with it (SQS deletes by any valid handle).
        let failed: HashSet<&str> = match &second {
            Some(b) => {
                let twin: Vec<Message> = messages.iter().filter(|m| is_fresh(m)).cloned().collect();
                let failed_twin = failed_ids(&self.source, b, &twin);
                let handed_twice: HashSet<&str> =
                    twin.iter().filter_map(|m| m.message_id()).collect();
                failed
                    .into_iter()
                    .filter(|id| !handed_twice.contains(id) || failed_twin.contains(id))
                    .collect()
            }
            None => failed,
        };
        let mut outcome = PollOutcome {
            received: messages.len(),
            ..Default::default()
        };
        let mut deletes = Vec::new();
        let mut again = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            // As Lambda does, a failed message is left alone: it reappears when the queue's
            // visibility timeout ends. (Not ChangeMessageVisibility: moto counts that as a receive.)
            if failed.contains(id) {
                outcome.failed += 1;
            } else if shape == Shape::Redelivered && is_fresh(m) {
                if let Ok(entry) = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                {
                    again.push((id.to_owned(), entry));
                }
            } else if let Ok(entry) = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .build()
            {
                if faults.is_some() {
                    state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .redelivered
                        .remove(id);
                }
                deletes.push(entry);
            }
        }
        let made_visible = again.len();
        if !again.is_empty() {
            let (ids, entries): (Vec<String>, Vec<_>) = again.into_iter().unzip();
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.source.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("redeliver on {}: {e:?}", self.source.queue_logical_id))?;
            state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .redelivered
                .extend(ids);
        }
        if !deletes.is_empty() {
            let n = deletes.len();
            self.client
                .delete_message_batch()
                .queue_url(&self.source.queue_url)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| format!("delete from {}: {e:?}", self.source.queue_logical_id))?;
            outcome.deleted = n;
        }
        if let Some(f) = faults {
            let s = &f.stats;
            let add = |a: &AtomicU64, n: usize| a.fetch_add(n as u64, Ordering::Relaxed);
            add(&s.batches, 1);
            add(&s.received, messages.len());
            add(&s.failed, outcome.failed);
            match shape {
                Shape::Concurrent => add(&s.concurrent, fresh.len()),
                Shape::Redelivered => add(&s.redelivered, made_visible),
                Shape::Once => 0,
            };
            if outcome.failed > 0 {
                add(&s.batches_with_failures, 1);
                add(
                    &s.succeeded_beside_failures,
                    messages.len() - outcome.failed,
                );
            }
        }
        Ok(outcome)
    }

    /// Polls until the task is dropped.
    pub async fn run(self) {
        self.run_loop(None).await
    }

    /// Polls until the task is dropped, injecting `faults`.
    pub async fn run_with(self, faults: DeliveryFaults) {
        self.run_loop(Some(faults)).await
    }

    /// How many batches this poller works on at once.
    pub fn concurrency(&self) -> u32 {
        self.source
            .maximum_concurrency
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1)
    }

    async fn run_loop(self, faults: Option<DeliveryFaults>) {
        let poller = Arc::new(self);
        let state = Arc::new(Mutex::default());
        // Dropping the set (when this task is dropped) aborts the loops.
        let mut loops = tokio::task::JoinSet::new();
        for index in 0..poller.concurrency() {
            let (poller, state, faults) = (poller.clone(), state.clone(), faults.clone());
            loops.spawn(async move { poller.poll_loop(index, faults.as_ref(), &state).await });
        }
        while loops.join_next().await.is_some() {}
    }

    /// One of the poller's concurrent loops. The first long-polls all the time; the others
    /// rest for [`SPARE_LOOP_REST`] after an empty receive, so an idle queue costs about one
    /// receive a second (many test stacks share one emulator), while a backlog keeps them all
    /// busy.
    async fn poll_loop(
        &self,
        index: u32,
        faults: Option<&DeliveryFaults>,
        state: &Mutex<FaultState>,
    ) {
        loop {
            let started = std::time::Instant::now();
            match self.poll(Duration::from_secs(1), faults, state).await {
                Ok(o) if o.received > 0 => {
                    tracing::info!(queue = %self.source.queue_logical_id, received = o.received, deleted = o.deleted, failed = o.failed, elapsed_ms = started.elapsed().as_millis() as u64, "batch")
                }
                Ok(_) if index > 0 => tokio::time::sleep(SPARE_LOOP_REST).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
