//! Scheduled (template.yaml: `rate(5 minutes)`): will send SLA reminders, escalate and reassign
//! leads whose owner has not accepted them in time, driven by the schedule event's time
//! (docs/domain.md, "Handover and SLA").
//!
//! Wired but not implemented yet: it logs its tick and does nothing else.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use leadflow_aws::Clients;
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::run::ScheduledFunction;

pub struct SlaTick;

impl SlaTick {
    /// Nothing to wire yet: the SLA issue gives it the table and the bus.
    pub fn from_env(_aws: &Clients, _env: &Env) -> Result<Self, ConfigError> {
        Ok(SlaTick)
    }
}

impl ScheduledFunction for SlaTick {
    async fn tick(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<String, String> {
        tracing::info!(at = ?event.time, "not implemented yet: no SLA timers are checked");
        Ok("ticked".to_owned())
    }
}
