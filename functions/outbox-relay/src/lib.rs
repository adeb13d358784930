//! Scheduled (template.yaml: `rate(1 minute)`): publishes the outbox events whose inline
//! publication failed, once the writer's claim on them has expired.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use leadflow_domain::ports::{EventPublisher, Outbox};
use leadflow_lambda::outbox::{relay, RelayError, RelayReport};

pub struct OutboxRelay<S, P> {
    store: S,
    publisher: P,
}

impl<S: Outbox, P: EventPublisher> OutboxRelay<S, P> {
    pub fn new(store: S, publisher: P) -> Self {
        Self { store, publisher }
    }

    /// One scheduled run, at the time the schedule says (the event's `time`).
    pub async fn handle(
        &self,
        event: EventBridgeEvent<serde_json::Value>,
    ) -> Result<RelayReport, RelayError> {
        self.run_at(event.time.unwrap_or_else(Utc::now)).await
    }

    pub async fn run_at(&self, now: DateTime<Utc>) -> Result<RelayReport, RelayError> {
        let report = relay(&self.store, &self.publisher, now).await?;
        if report != RelayReport::default() {
            tracing::info!(
                published = report.published,
                skipped = report.skipped,
                failed = report.failed,
                "outbox relayed"
            );
        }
        Ok(report)
    }
}
