//! Delivers routed leads to the owner's CRM (issue: CRM integration).
//!
//! Wired in template.yaml (queue, DLQ, rule) but not implemented yet: every record is reported
//! as failed, so it stays on the queue and then the DLQ, from where it can be re-driven once
//! this function exists. Nothing is lost in the meantime.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

pub const FUNCTION: &str = "crm-webhook";

/// Whether `cargo dev` should poll this function's queue. While false, the local stack leaves
/// the queue alone so its messages can be inspected there.
pub const IMPLEMENTED: bool = false;

pub async fn handle(event: SqsEvent) -> SqsBatchResponse {
    leadflow_lambda::sqs::not_implemented(FUNCTION, event)
}
