use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use leadflow_domain::ports::{QueueError, TrackedEventQueue};
use leadflow_domain::TrackedEvent;

use crate::describe;

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
                .map_err(|e| QueueError(describe(&e)))?;
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
