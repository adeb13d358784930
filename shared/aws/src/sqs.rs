use std::collections::{BTreeMap, HashSet};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
};
use aws_sdk_sqs::Client;
use leadflow_domain::ports::{error_chain, QueueError, TrackedEventQueue};
use leadflow_domain::TrackedEvent;

/// SendMessageBatch takes at most 10 messages a call.
const MAX_BATCH: usize = 10;

/// The score-event queue: one message per tracked event.
#[derive(Clone)]
pub struct SqsEventQueue {
    client: Client,
    queue_url: String,
}

impl SqsEventQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl TrackedEventQueue for SqsEventQueue {
    async fn enqueue(&self, events: &[TrackedEvent]) -> Result<(), QueueError> {
        for chunk in events.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let body = serde_json::to_string(e).map_err(|e| QueueError(e.to_string()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| QueueError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(error_chain(&e)))?;
            // A batch can fail in part; the client retries the request (event ids make it safe).
            if !out.failed().is_empty() {
                let reasons: Vec<_> = out
                    .failed()
                    .iter()
                    .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
                    .collect();
                return Err(QueueError(reasons.join("; ")));
            }
        }
        Ok(())
    }
}

/// A queue whose consumer schedules its own retries (ChangeMessageVisibility) and parks what it
/// gives up on in the queue's DLQ, with the reason as a message attribute.
#[derive(Clone)]
pub struct SqsRetryQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
}

/// The message attribute that says why a message is on the DLQ.
pub const DEAD_LETTER_REASON: &str = "leadflow-reason";

impl SqsRetryQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
        }
    }
}

impl leadflow_domain::ports::RetryQueue for SqsRetryQueue {
    async fn retry_later(
        &self,
        receipt_handle: &str,
        delay_seconds: u32,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay_seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(|e| QueueError(error_chain(&e)))?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .message_attributes(DEAD_LETTER_REASON, attribute)
            .send()
            .await
            .map_err(|e| QueueError(error_chain(&e)))?;
        Ok(())
    }
}

// ------------------------------------------------------------------ dead-letter replay

/// How long a replay keeps a received DLQ message hidden from other readers: long enough to
/// send it and delete it. A message whose send failed reappears on the DLQ after this.
const REDRIVE_VISIBILITY_SECONDS: i32 = 60;
/// How long a peek hides the messages it has seen, so that the next receive returns others; it
/// makes them visible again at its end (or they reappear after this if that fails).
const PEEK_VISIBILITY_SECONDS: i32 = 120;
/// Long polling of one second: a short poll (0) samples only some SQS servers and can answer
/// "empty" while messages wait, which would end a replay early.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// What [`redrive`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages sent to the queue and then deleted from the DLQ.
    pub moved: usize,
    /// Why the moved messages had been given up, with how many each (see [`dead_letter_reason`]).
    pub reasons: BTreeMap<String, usize>,
    /// Messages left on the DLQ because this run had already moved a message with the same body:
    /// a delivery that failed again and came back while the replay ran (or a duplicate). They
    /// are not moved round in a loop; the run goes on with the others, and a later replay moves
    /// them.
    pub returned: usize,
}

/// What [`peek`] saw on a DLQ, without moving anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeekReport {
    /// Messages on the DLQ (up to `max`).
    pub messages: usize,
    /// Why they were given up, with how many each (see [`dead_letter_reason`]).
    pub reasons: BTreeMap<String, usize>,
}

/// Why a DLQ message was given up: the [`DEAD_LETTER_REASON`] attribute a consumer set
/// ([`SqsRetryQueue`]); for an event EventBridge could not deliver to the queue, its
/// `ERROR_CODE` attribute; otherwise (SQS moved it after `maxReceiveCount` failed receives)
/// `"no reason given"`.
pub fn dead_letter_reason(message: &Message) -> String {
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .filter(|v| !v.is_empty())
    };
    if let Some(reason) = attribute(DEAD_LETTER_REASON) {
        reason.to_owned()
    } else if let Some(code) = attribute("ERROR_CODE") {
        format!("EventBridge: {code}")
    } else {
        "no reason given".to_owned()
    }
}

async fn receive(
    client: &Client,
    queue_url: &str,
    count: usize,
    visibility_seconds: i32,
) -> Result<Vec<Message>, QueueError> {
    let out = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(count.clamp(1, MAX_BATCH) as i32)
        .visibility_timeout(visibility_seconds)
        .wait_time_seconds(RECEIVE_WAIT_SECONDS)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| QueueError(error_chain(&e)))?;
    Ok(out.messages.unwrap_or_default())
}

/// Makes received messages visible again at once (at most [`MAX_BATCH`] handles).
async fn release(client: &Client, queue_url: &str, handles: &[&str]) -> Result<(), QueueError> {
    if handles.is_empty() {
        return Ok(());
    }
    let entries = handles
        .iter()
        .enumerate()
        .map(|(i, handle)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(*handle)
                .visibility_timeout(0)
                .build()
                .map_err(|e| QueueError(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = client
        .change_message_visibility_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| QueueError(error_chain(&e)))?;
    batch_failures(out.failed())
}

fn batch_failures(failed: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Result<(), QueueError> {
    if failed.is_empty() {
        return Ok(());
    }
    let reasons: Vec<_> = failed
        .iter()
        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
        .collect();
    Err(QueueError(reasons.join("; ")))
}

/// Moves the messages of the dead-letter queue `dlq_url` back to `queue_url`, up to `max`
/// (`None`: until the DLQ answers empty), and says how many it moved and why they had been
/// given up.
///
/// Each message's body is sent unchanged, without its attributes (SendMessageBatch), and the
/// message is deleted from the DLQ only after its send succeeded, so nothing is lost; a message
/// can be delivered twice (sent, then the delete failed), which the consumer tolerates.
/// Received messages stay hidden for 60 s while this runs. A message whose body this run has
/// already moved is left on the DLQ (counted in [`RedriveReport::returned`]): it failed again
/// while the replay ran, or is a duplicate. The run ends when a receive brings nothing new.
///
/// The first failing SQS call ends the run with an error that says how many were moved before;
/// messages received but not sent reappear on the DLQ after the visibility timeout.
pub async fn redrive(
    client: &Client,
    dlq_url: &str,
    queue_url: &str,
    max: Option<usize>,
) -> Result<RedriveReport, QueueError> {
    let mut report = RedriveReport::default();
    let mut sent_bodies = HashSet::new();
    let failed = |report: &RedriveReport, what: &str, e: QueueError| {
        QueueError(format!(
            "{what} (after moving {} message(s)): {}",
            report.moved, e.0
        ))
    };
    // Messages left on the DLQ (came back, or duplicates), hidden until the run ends so the
    // next receives return others.
    let mut held: Vec<String> = Vec::new();
    loop {
        let remaining = max.map_or(MAX_BATCH, |m| m - report.moved).min(MAX_BATCH);
        if remaining == 0 {
            break;
        }
        let messages = receive(client, dlq_url, remaining, REDRIVE_VISIBILITY_SECONDS)
            .await
            .map_err(|e| failed(&report, "receiving from the DLQ failed", e))?;
        if messages.is_empty() {
            break;
        }
        // Messages that came back (or duplicates) go back to the DLQ untouched.
        let (returned, fresh): (Vec<_>, Vec<_>) = messages
            .iter()
            .partition(|m| sent_bodies.contains(m.body().unwrap_or_default()));
        let mut batch_bodies = HashSet::new();
        let (fresh, duplicates): (Vec<_>, Vec<_>) = fresh
            .into_iter()
            .partition(|m| batch_bodies.insert(m.body().unwrap_or_default()));
        held.extend(
            returned
                .iter()
                .chain(&duplicates)
                .filter_map(|m| m.receipt_handle())
                .map(str::to_owned),
        );
        report.returned += returned.len() + duplicates.len();
        if fresh.is_empty() {
            // Only messages this run has moved already: the rest of the DLQ has been seen.
            break;
        }
        if !fresh.is_empty() {
            let entries = fresh
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.body().unwrap_or_default())
                        .build()
                        .map_err(|e| QueueError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    failed(
                        &report,
                        "sending to the queue failed",
                        QueueError(error_chain(&e)),
                    )
                })?;
            // Delete exactly the messages whose send succeeded.
            let sent: Vec<&Message> = out
                .successful()
                .iter()
                .filter_map(|s| s.id().parse::<usize>().ok())
                .filter_map(|i| fresh.get(i).copied())
                .collect();
            if !sent.is_empty() {
                let entries = sent
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                            .map_err(|e| QueueError(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let deleted = client
                    .delete_message_batch()
                    .queue_url(dlq_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| QueueError(error_chain(&e)))
                    .and_then(|out| batch_failures(out.failed()));
                for m in &sent {
                    report.moved += 1;
                    *report.reasons.entry(dead_letter_reason(m)).or_default() += 1;
                    sent_bodies.insert(m.body().unwrap_or_default().to_owned());
                }
                deleted.map_err(|e| {
                    failed(
                        &report,
                        "deleting sent messages from the DLQ failed; they will be sent again by \
                         the next replay",
                        e,
                    )
                })?;
            }
            batch_failures(out.failed())
                .map_err(|e| failed(&report, "sending to the queue failed in part", e))?;
        }
    }
    // Best effort: held messages reappear after the visibility timeout anyway.
    for chunk in held.chunks(MAX_BATCH) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let _ = release(client, dlq_url, &chunk).await;
    }
    Ok(report)
}

/// Counts the messages on the dead-letter queue `dlq_url` (up to `max`; `None`: all) and why
/// they were given up, without moving them: what [`redrive`] would move.
///
/// Each received message is hidden for 120 s so that the next receive returns others, and made
/// visible again at the end; if that fails, the messages reappear after those 120 s. A peek that
/// runs longer than that sees its first messages again and stops there (it has seen them all).
pub async fn peek(
    client: &Client,
    dlq_url: &str,
    max: Option<usize>,
) -> Result<PeekReport, QueueError> {
    let mut report = PeekReport::default();
    let mut seen = HashSet::new();
    let mut handles = Vec::new();
    let mut result = Ok(());
    loop {
        let remaining = max
            .map_or(MAX_BATCH, |m| m - report.messages)
            .min(MAX_BATCH);
        if remaining == 0 {
            break;
        }
        let messages = match receive(client, dlq_url, remaining, PEEK_VISIBILITY_SECONDS).await {
            Ok(messages) => messages,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if messages.is_empty() {
            break;
        }
        let mut wrapped = false;
        for m in messages {
            if let Some(handle) = m.receipt_handle() {
                handles.push(handle.to_owned());
            }
            // A message seen before has come round again (its visibility ran out): counted once.
            if seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                report.messages += 1;
                *report.reasons.entry(dead_letter_reason(&m)).or_default() += 1;
            } else {
                wrapped = true;
            }
        }
        if wrapped {
            break;
        }
    }
    for chunk in handles.chunks(MAX_BATCH) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        if let Err(e) = release(client, dlq_url, &chunk).await {
            result = result.and(Err(QueueError(format!(
                "could not make the peeked messages visible again (they will be after {PEEK_VISIBILITY_SECONDS} s): {}",
                e.0
            ))));
        }
    }
    result.map(|()| report)
}
