use aws_sdk_eventbridge::primitives::DateTime as AwsDateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use leadflow_domain::ports::{error_chain, EventPublisher, PublishError};
use leadflow_domain::{EventEnvelope, EVENT_SOURCE};

/// PutEvents takes at most 10 entries a call.
const MAX_ENTRIES: usize = 10;

/// Publishes domain events to the leadflow bus: `source` = "leadflow", `detail-type` = the
/// event's name, `detail` = the envelope.
#[derive(Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus_name: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        for chunk in events.chunks(MAX_ENTRIES) {
            let mut request = self.client.put_events();
            for event in chunk {
                let detail =
                    serde_json::to_string(event).map_err(|e| PublishError(e.to_string()))?;
                let time = AwsDateTime::from_millis(event.occurred_at.timestamp_millis());
                request = request.entries(
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus_name)
                        .source(EVENT_SOURCE)
                        .detail_type(event.detail_type())
                        .detail(detail)
                        .time(time)
                        .resources(format!("lead/{}", event.lead_id))
                        .build(),
                );
            }
            let out = request
                .send()
                .await
                .map_err(|e| PublishError(error_chain(&e)))?;
            // PutEvents answers 200 even when entries failed; each failed entry says why.
            if out.failed_entry_count() > 0 {
                let reasons: Vec<String> = out
                    .entries()
                    .iter()
                    .filter_map(|e| {
                        e.error_code()
                            .map(|c| format!("{c}: {}", e.error_message().unwrap_or_default()))
                    })
                    .collect();
                return Err(PublishError(format!(
                    "{} entries failed: {}",
                    out.failed_entry_count(),
                    reasons.join("; ")
                )));
            }
        }
        Ok(())
    }
}
