use capture_form::{CaptureConfig, CaptureForm};
use lambda_http::{service_fn, Error, Request};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::sqs::SqsEventQueue;
use leadflow_lambda::config::required;

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
    let queue = SqsEventQueue::new(
        leadflow_aws::aws_sdk_sqs::Client::new(&sdk),
        required("SCORE_EVENT_QUEUE_URL")?,
    );
    let handler = CaptureForm::new(store, publisher, queue, CaptureConfig::from_env()?);
    let handler = &handler;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handler.handle(req).await)
    }))
    .await
}
