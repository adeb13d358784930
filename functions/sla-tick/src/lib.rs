//! Scheduled (template.yaml: `rate(5 minutes)`): will send SLA reminders, escalate and reassign
//! leads whose owner has not accepted them in time, driven by the schedule event's time.
//!
//! Wired but not implemented yet: it logs its tick and does nothing else.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

pub const FUNCTION: &str = "sla-tick";
pub const IMPLEMENTED: bool = false;

pub async fn handle(event: EventBridgeEvent<serde_json::Value>) {
    tracing::info!(function = FUNCTION, at = ?event.time, "not implemented yet: no SLA timers are checked");
}
