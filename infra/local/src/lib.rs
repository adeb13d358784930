//! The local stack: an AWS emulator (moto, or any endpoint in `AWS_ENDPOINT_URL` such as
//! LocalStack), the resources of `template.yaml` provisioned on it, and the real handlers run
//! in-process behind an HTTP server, queue pollers and schedules that behave like API Gateway,
//! Lambda event source mappings and EventBridge schedules. `cargo dev` and the integration
//! tests both use it.

pub mod config;
pub mod cpu;
pub mod emulator;
pub mod endpoints;
pub mod env_files;
pub mod functions;
pub mod http;
pub mod manifest;
pub mod poller;
pub mod python;
pub mod schedule;
pub mod soak;
pub mod stack;

use std::path::PathBuf;

pub use emulator::Emulator;
pub use manifest::Manifest;
pub use stack::LocalStack;

/// The workspace root (where template.yaml is).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or(here)
}

/// A reqwest client builder for the local binaries and tests. reqwest on the workspace's rustls
/// wants its crypto provider named once per process, before the first client is built.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

/// Human-readable logs for the local binaries (`cargo dev`, the benches): `RUST_LOG` if set,
/// else `default` (e.g. "info", or "warn" where per-batch info lines would drown the report).
pub fn init_logs(default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

/// The region everything local runs in.
pub const LOCAL_REGION: &str = "us-east-1";

/// An SDK configuration for the emulator: its endpoint, the region the stack was provisioned
/// in (whatever `AWS_REGION` says), and dummy credentials unless real ones are configured
/// (LocalStack and moto accept any).
///
/// Each client gets its service's endpoint ([`endpoints::ServiceEndpoints`]): the emulator
/// started here serves DynamoDB from a process of its own.
pub async fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    let endpoints = endpoints::ServiceEndpoints::discover(endpoint).await;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "leadflow-local",
        ));
    }
    loader
        .load()
        .await
        .into_builder()
        .service_config(endpoints)
        .build()
}
