#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (aws, env) = leadflow_lambda::start().await;
    leadflow_lambda::run::http(capture_form::CaptureForm::from_env(&aws, &env)?).await
}
