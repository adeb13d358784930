// The handler future nests deeply (signature, config, link and lead store calls).
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::http(crm_callback::CrmCallback::from_env(&aws, &env)?).await
}
