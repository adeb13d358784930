//! Lambda glue every function shares: tracing set-up, configuration from the environment, SQS
//! batch responses, and delivery of outbox events.

pub mod active_config;
pub mod config;
#[cfg(feature = "http")]
pub mod http;
pub mod outbox;
pub mod retry;
pub mod sqs;

pub use lambda_runtime;

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
