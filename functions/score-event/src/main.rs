// The handler future nests deeply (config, score and lead store calls): layout needs the room.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::sqs(score_event::ScoreEvent::from_env(&aws, &env)?).await
}
