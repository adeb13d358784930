//! Lambda glue every function shares: wiring from the environment ([`config`], [`wiring`],
//! [`start`]), how Lambda runs a function ([`run`]), the one lead-update path
//! ([`lead_update`]), SQS batch responses, HTTP answers, delivery of outbox events, tracing.

pub mod active_config;
pub mod config;
#[cfg(feature = "http")]
pub mod http;
pub mod lead_update;
pub mod outbox;
pub mod retry;
pub mod run;
pub mod sqs;
pub mod turns;
pub mod wiring;

pub use lambda_runtime;

/// What every `main.rs` starts with: JSON logs, the SDK clients (built on first use) and the
/// process environment to build the function from.
pub async fn start() -> (leadflow_aws::Clients, config::Env) {
    init_tracing();
    (
        leadflow_aws::Clients::from_env().await,
        config::Env::process(),
    )
}

/// JSON logs for CloudWatch (one object per line), filtered by `RUST_LOG` (default `info`).
/// Safe to call more than once: later calls keep the first subscriber.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line itself.
        .with_target(false)
        .try_init();
}
