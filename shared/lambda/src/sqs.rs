//! SQS batches with partial failures (`ReportBatchItemFailures`): a record that fails goes back
//! to the queue alone, and reaches the DLQ after `maxReceiveCount` receives.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

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
    .map_err(|e| RecordError::Poison(format!("not a leadflow event: {}", json_error(&e))))
}

/// A serde_json error without the input it quotes (`invalid type: string "anna@…"`, `unknown
/// variant `…``): its category and position only. What a malformed message held must not reach
/// the logs or a DLQ reason; the message itself is kept on the DLQ for whoever may read it.
pub fn json_error(e: &serde_json::Error) -> String {
    let category = match e.classify() {
        serde_json::error::Category::Io => "unreadable input",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a value of the wrong type or shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{category} at line {} column {}", e.line(), e.column())
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

/// Runs `handle` for every record of the batch and reports the failed ones. A record whose
/// handling panics fails alone: without the catch, lambda_runtime would fail the whole
/// invocation and every record of the batch would come back (and count a receive).
pub async fn for_each_record<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        // The record's future is dropped after a panic, so no state it touched is reused.
        match AssertUnwindSafe(handle(record)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(message_id = %id, error = %err, "record failed");
                response.batch_item_failures.push(failure(id));
            }
            Err(_) => {
                tracing::error!(message_id = %id, "record handler panicked");
                response.batch_item_failures.push(failure(id));
            }
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

    #[test]
    fn a_malformed_event_is_reported_without_its_values() {
        // A number holds an e-mail address (a producer's bug, or a forged message): the error
        // names where, never what.
        let body = r#"{"version":"0","id":"1","detail-type":"LeadCaptured","source":"leadflow","account":"1","time":"2026-11-23T09:15:00Z","region":"eu-central-1","resources":[],"detail":{"schema_version":"anna.schmidt@example.com","event_id":"01935c6e-8a4f-7000-8000-000000000001","occurred_at":"2026-11-23T09:15:00Z","lead_id":"01935c6e-8a4e-7c3b-9f21-3c8e2b6d4a10","type":"LeadCaptured"}}"#;
        let bare =
            serde_json::from_str::<serde_json::Value>(r#"{"email": "anna.schmidt@example.com""#)
                .unwrap_err();
        assert!(!json_error(&bare).contains("anna"), "{}", json_error(&bare));
        // What serde itself says quotes the value: the reason this exists.
        let raw = serde_json::from_str::<
            aws_lambda_events::event::eventbridge::EventBridgeEvent<leadflow_domain::EventEnvelope>,
        >(body)
        .unwrap_err()
        .to_string();
        assert!(raw.contains("anna.schmidt@example.com"), "{raw}");
        let err = leadflow_event(body).unwrap_err();
        assert!(matches!(err, RecordError::Poison(_)));
        let err = err.to_string();
        assert!(!err.contains("anna"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
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

    #[tokio::test]
    async fn a_panicking_record_fails_only_itself() {
        let response = for_each_record(event(&["a", "b", "c"]), |m| async move {
            if m.body.as_deref() == Some("body-b") {
                panic!("a bug met by one record");
            }
            Ok(())
        })
        .await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["b"], "a and c were handled, b alone goes back");
    }

    /// The catch above needs unwinding panics in the builds Lambda runs: `panic = "abort"` in
    /// the release profile would end the process (and return the whole batch) instead.
    #[test]
    fn release_builds_unwind() {
        let manifest = include_str!("../../../Cargo.toml");
        let release = manifest
            .split("[profile.release]")
            .nth(1)
            .expect("a [profile.release] section")
            .split("\n[")
            .next()
            .unwrap_or_default();
        assert!(
            !release.contains("panic = \"abort\"") && !release.contains("panic=\"abort\""),
            "[profile.release] must not abort on panic"
        );
    }
}
