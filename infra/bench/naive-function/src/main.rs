//! The naive function the cold-start bench measures ours against
//! (`infra/local/src/bin/cold-start-bench.rs`): what a first Rust Lambda usually looks like.
//! Everything is set up eagerly in `main`: the default subscriber, the SDK configuration
//! (`aws_config::load_from_env`) and the three clients a lead pipeline step needs, before the
//! first `next` request to the Runtime API. It is not deployed.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

struct Clients {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    eventbridge: aws_sdk_eventbridge::Client,
}

/// Stores the event, queues it and announces it: one call per client, so the binary links the
/// operations a real step would.
async fn handle(clients: &Clients, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let body = event.payload.to_string();
    clients
        .dynamodb
        .put_item()
        .table_name(std::env::var("TABLE_NAME")?)
        .item("pk", AttributeValue::S(event.context.request_id.clone()))
        .item("body", AttributeValue::S(body.clone()))
        .send()
        .await?;
    clients
        .sqs
        .send_message()
        .queue_url(std::env::var("QUEUE_URL")?)
        .message_body(body.clone())
        .send()
        .await?;
    clients
        .eventbridge
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(std::env::var("EVENT_BUS_NAME")?)
                .source("naive")
                .detail_type("Handled")
                .detail(body)
                .build(),
        )
        .send()
        .await?;
    Ok(serde_json::json!({ "ok": true }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = aws_config::load_from_env().await;
    let clients = Clients {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        eventbridge: aws_sdk_eventbridge::Client::new(&config),
    };
    let clients = &clients;
    lambda_runtime::run(service_fn(move |event| handle(clients, event))).await
}
