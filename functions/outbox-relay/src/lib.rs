//! Scheduled (template.yaml: `rate(1 minute)`): publishes the outbox events whose inline
//! publication failed, once the writer's claim on them has expired.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::ports::{EventPublisher, Outbox};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::outbox::{relay, RelayError, RelayReport};
use leadflow_lambda::run::ScheduledFunction;
use leadflow_lambda::wiring;

pub struct OutboxRelay<S, P> {
    store: S,
    publisher: P,
}

impl OutboxRelay<DynamoStore, EventBridgePublisher> {
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::new(
            wiring::store(aws, env)?,
            wiring::publisher(aws, env)?,
        ))
    }
}

impl<S: Outbox, P: EventPublisher> ScheduledFunction for OutboxRelay<S, P> {
    /// One scheduled run, at the time the schedule says (the event's `time`).
    async fn tick(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<String, String> {
        self.run_at(event.time.unwrap_or_else(Utc::now))
            .await
            .map(|r| format!("published {}", r.published))
            .map_err(|e| e.to_string())
    }
}

impl<S: Outbox, P: EventPublisher> OutboxRelay<S, P> {
    pub fn new(store: S, publisher: P) -> Self {
        Self { store, publisher }
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
