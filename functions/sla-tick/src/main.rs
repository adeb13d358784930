#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::schedule(sla_tick::SlaTick::from_env(&aws, &env)?).await
}
