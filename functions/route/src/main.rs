// The handler future nests deeply (config, score and lead store calls): layout needs the room.
#![recursion_limit = "256"]

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::config::required;
use route::Route;

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
    let handler = &Route::new(store.clone(), publisher, ActiveConfig::from_env(store));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handler.handle(event.payload).await)
    }))
    .await
}
