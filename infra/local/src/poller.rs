//! Queue pollers that behave like Lambda's SQS event source mappings: receive up to the batch
//! size, invoke the function with an SQS event, delete what succeeded, and leave the reported
//! failures on the queue, where the queue's redrive policy moves them to the DLQ after
//! `maxReceiveCount` receives.

use std::collections::HashSet;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_sdk_sqs::Client;

use crate::functions::SqsHandler;
use crate::manifest::QueueSource;

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

impl Poller {
    /// Receives one batch (waiting up to `wait` for messages) and invokes the function with it.
    pub async fn poll_once(&self, wait: Duration) -> Result<PollOutcome, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.source.queue_url)
            .max_number_of_messages(self.source.batch_size.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("receive from {}: {e:?}", self.source.queue_logical_id))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| {
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
            })
            .collect();
        let response = (self.handler)(event).await;
        // Without ReportBatchItemFailures, any failure fails the whole batch, as in Lambda.
        let failed: HashSet<&str> =
            if self.source.report_batch_item_failures || response.batch_item_failures.is_empty() {
                response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect()
            } else {
                messages.iter().filter_map(|m| m.message_id()).collect()
            };
        let mut outcome = PollOutcome {
            received: messages.len(),
            ..Default::default()
        };
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            // As Lambda does, a failed message is left alone: it reappears when the queue's
            // visibility timeout ends. (Not ChangeMessageVisibility: moto counts that as a receive.)
            if failed.contains(id) {
                outcome.failed += 1;
            } else if let Ok(entry) = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .build()
            {
                deletes.push(entry);
            }
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
        Ok(outcome)
    }

    /// Polls until the task is dropped.
    pub async fn run(self) {
        loop {
            match self.poll_once(Duration::from_secs(1)).await {
                Ok(o) if o.received > 0 => {
                    tracing::info!(queue = %self.source.queue_logical_id, received = o.received, deleted = o.deleted, failed = o.failed, "batch")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
