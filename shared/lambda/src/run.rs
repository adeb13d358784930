//! What a function is to its triggers, and how Lambda runs it: every `main.rs` builds its
//! function from the environment and hands it to one of these; the local stack invokes the
//! same traits.

use std::future::Future;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use lambda_runtime::{service_fn, Error, LambdaEvent};

use crate::sqs::{for_each_record, RecordError};

/// A function fed by an SQS queue (an event source mapping with `ReportBatchItemFailures`):
/// it handles one message at a time, and a message it fails goes back to the queue alone.
pub trait SqsFunction: Send + Sync {
    /// Handles one message as if it arrived at `now`.
    fn record(
        &self,
        message: &SqsMessage,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    fn handle(&self, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send {
        async move { for_each_record(event, |m| async move { self.record(&m, Utc::now()).await }).await }
    }
}

/// A function run by a schedule. `Ok` tells what the run did, for the log.
pub trait ScheduledFunction: Send + Sync {
    fn tick(
        &self,
        event: EventBridgeEvent<serde_json::Value>,
    ) -> impl Future<Output = Result<String, String>> + Send;
}

/// A function behind the HTTP API.
#[cfg(feature = "http")]
pub trait HttpFunction: Send + Sync {
    fn handle(
        &self,
        request: lambda_http::Request,
    ) -> impl Future<Output = lambda_http::Response<lambda_http::Body>> + Send;
}

/// Serves SQS batches until Lambda stops the process.
pub async fn sqs(function: impl SqsFunction) -> Result<(), Error> {
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(function.handle(event.payload).await)
    }))
    .await
}

/// Serves scheduled events; a failed run fails the invocation (and shows in its metrics).
pub async fn schedule(function: impl ScheduledFunction) -> Result<(), Error> {
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let done = function.tick(event.payload).await.map_err(Error::from)?;
            tracing::info!(done = %done, "scheduled run");
            Ok::<_, Error>(())
        },
    ))
    .await
}

/// Serves HTTP API requests.
#[cfg(feature = "http")]
pub async fn http(function: impl HttpFunction) -> Result<(), Error> {
    let function = &function;
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| async move {
            Ok::<_, Error>(function.handle(request).await)
        },
    ))
    .await
}
