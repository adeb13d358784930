// The handler future nests deeply (config, score, activity and lead reads): layout needs room.
#![recursion_limit = "256"]

use aws_lambda_events::event::sqs::SqsEvent;
use crm_webhook::deliver::{Deliver, DeliverySettings};
use crm_webhook::transport::HttpsTransport;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::secrets::Secrets;
use leadflow_aws::sqs::SqsRetryQueue;
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::config::required;

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_lambda::init_tracing();
    let sdk = leadflow_aws::sdk_config().await;
    let store = DynamoStore::new(
        leadflow_aws::aws_sdk_dynamodb::Client::new(&sdk),
        required("TABLE_NAME")?,
    );
    let queue = SqsRetryQueue::new(
        leadflow_aws::aws_sdk_sqs::Client::new(&sdk),
        required("QUEUE_URL")?,
        required("DLQ_URL")?,
    );
    let secrets = Secrets::new(
        Secrets::process_env(),
        leadflow_aws::aws_sdk_secretsmanager::Client::new(&sdk),
    );
    let handler = &Deliver::new(
        store.clone(),
        HttpsTransport::new()?,
        queue,
        secrets,
        ActiveConfig::from_env(store),
        DeliverySettings::from_lookup(|name| std::env::var(name).ok()),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handler.handle(event.payload).await)
    }))
    .await
}
