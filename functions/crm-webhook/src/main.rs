// The handler future nests deeply (config, score, activity and lead reads): layout needs room.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::sqs(crm_webhook::deliver::Deliver::from_env(&aws, &env)?).await
}
