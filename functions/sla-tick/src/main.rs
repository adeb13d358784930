// The handler future nests deeply (due index, lead, score, turns and outbox calls).
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::schedule(sla_tick::SlaTick::from_env(&aws, &env)?).await
}
