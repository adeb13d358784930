// The handler future nests deeply (outbox scan, lead and publisher calls): layout needs room.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::schedule(outbox_relay::OutboxRelay::from_env(&aws, &env)?).await
}
