//! Continuations of joins on the function's own queue (SQS).

use leadflow_aws::aws_sdk_sqs::Client;
use leadflow_domain::ports::{error_chain, QueueError};
use leadflow_domain::LeadId;

use crate::{JoinContinuation, JoinQueue};

pub struct SqsJoinQueue {
    client: Client,
    queue_url: String,
}

impl SqsJoinQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl JoinQueue for SqsJoinQueue {
    async fn continue_join(&self, lead: LeadId) -> Result<(), QueueError> {
        let body = serde_json::to_string(&JoinContinuation {
            continue_join: lead,
        })
        .map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError(error_chain(&e)))?;
        Ok(())
    }
}
