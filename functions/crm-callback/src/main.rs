// The handler future nests deeply (signature, config, link and lead store calls).
#![recursion_limit = "256"]

use crm_callback::CrmCallback;
use lambda_http::{service_fn, Error, Request};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::secrets::Secrets;
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
    let handler = &CrmCallback::new(
        store.clone(),
        EventBridgePublisher::new(
            leadflow_aws::aws_sdk_eventbridge::Client::new(&sdk),
            required("EVENT_BUS_NAME")?,
        ),
        Secrets::new(
            Secrets::process_env(),
            leadflow_aws::aws_sdk_secretsmanager::Client::new(&sdk),
        ),
        ActiveConfig::from_env(store),
    );
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handler.handle(req).await)
    }))
    .await
}
