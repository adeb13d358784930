//! AWS adapters behind the domain's ports. Each adapter takes an SDK client built once in
//! `main`, so a cold start pays for client construction once and warm invocations never.
//!
//! The key design of the single table is documented in `docs/data-model.md`.

#[cfg(feature = "dynamodb")]
pub mod config_store;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "dynamodb")]
pub mod routing_state;
#[cfg(feature = "dynamodb")]
pub mod score_store;
pub mod secrets;
#[cfg(feature = "sqs")]
pub mod sqs;

pub use aws_config;
#[cfg(feature = "dynamodb")]
pub use aws_sdk_dynamodb;
#[cfg(feature = "eventbridge")]
pub use aws_sdk_eventbridge;
#[cfg(feature = "secretsmanager")]
pub use aws_sdk_secretsmanager;
#[cfg(feature = "sqs")]
pub use aws_sdk_sqs;

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL`, which points every client at an emulator such as moto or LocalStack).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// Renders an SDK error with its whole chain of causes: the SDK's own `Display` says only
/// "service error", which tells an operator nothing.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
