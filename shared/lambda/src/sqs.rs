//! SQS batches with partial failures (`ReportBatchItemFailures`): a record that fails goes back
//! to the queue alone, and reaches the DLQ after `maxReceiveCount` receives.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use leadflow_domain::ports::{LeadStore, StoreError};
use leadflow_domain::{Lead, LeadId};

use crate::lead_update::UpdateError;

/// Why one record failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Worth another delivery (a dependency was unavailable, a write lost a race).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will never succeed (unreadable message). Reported as failed all the same, so it is kept
    /// and lands in the DLQ for a human, never silently dropped.
    #[error("poison message: {0}")]
    Poison(String),
}

impl RecordError {
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        RecordError::Retryable(e.to_string())
    }
}

/// A store that is unavailable or busy is worth another delivery; corrupt data is not (it is
/// kept for the DLQ all the same).
impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(_) => RecordError::Poison(e.to_string()),
            e => RecordError::Retryable(e.to_string()),
        }
    }
}

/// A change the domain refused for an event is never accepted later: poison. A lead the event
/// names is missing: poison too (an event never outlives its lead).
impl<E: std::fmt::Display> From<UpdateError<E>> for RecordError {
    fn from(e: UpdateError<E>) -> Self {
        match e {
            UpdateError::NotFound => RecordError::Poison("the lead does not exist".into()),
            UpdateError::Rejected(e) => RecordError::Poison(e.to_string()),
            UpdateError::Store(e) => e.into(),
            UpdateError::Contended => RecordError::Retryable(e.to_string()),
        }
    }
}

/// The leadflow event inside an SQS message that an EventBridge rule delivered (the whole
/// EventBridge envelope arrives; its `detail` is ours). Unreadable: poison, kept for the DLQ.
pub fn leadflow_event(body: &str) -> Result<leadflow_domain::EventEnvelope, RecordError> {
    serde_json::from_str::<
        aws_lambda_events::event::eventbridge::EventBridgeEvent<leadflow_domain::EventEnvelope>,
    >(body)
    .map(|e| e.detail)
    .map_err(|e| RecordError::Poison(format!("not a leadflow event: {e}")))
}

/// The lead an event is about. Missing: poison (an event never outlives its lead), kept for
/// the DLQ; a store failure is worth a retry.
pub async fn lead_of<S: LeadStore>(store: &S, id: LeadId) -> Result<Lead, RecordError> {
    store
        .get(id)
        .await?
        .ok_or_else(|| RecordError::Poison(format!("lead {id} does not exist")))
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

/// Runs `handle` for every record of the batch and reports the failed ones.
pub async fn for_each_record<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if let Err(err) = handle(record).await {
            tracing::warn!(message_id = %id, error = %err, "record failed");
            response.batch_item_failures.push(failure(id));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ids: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = ids
            .iter()
            .map(|id| {
                let mut m = SqsMessage::default();
                m.message_id = Some((*id).to_owned());
                m.body = Some(format!("body-{id}"));
                m
            })
            .collect();
        e
    }

    #[tokio::test]
    async fn only_failed_records_are_reported() {
        let response = for_each_record(event(&["a", "b", "c"]), |m| async move {
            match m.body.as_deref() {
                Some("body-b") => Err(RecordError::Retryable("store busy".into())),
                _ => Ok(()),
            }
        })
        .await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["b"]);
    }
}
