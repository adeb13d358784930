use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_lambda::config::required;
use outbox_relay::OutboxRelay;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_lambda::init_tracing();
    let sdk = leadflow_aws::sdk_config().await;
    let store = DynamoStore::new(
        leadflow_aws::aws_sdk_dynamodb::Client::new(&sdk),
        required("TABLE_NAME")?,
    );
    let publisher = EventBridgePublisher::new(
        leadflow_aws::aws_sdk_eventbridge::Client::new(&sdk),
        required("EVENT_BUS_NAME")?,
    );
    let relay = &OutboxRelay::new(store, publisher);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            relay
                .handle(event.payload)
                .await
                .map(|r| r.published)
                .map_err(Error::from)
        },
    ))
    .await
}
