//! AWS adapters behind the domain's ports. Each adapter takes an SDK client built once per
//! process ([`Clients`]), so a cold start pays for client construction once and warm
//! invocations never.
//!
//! The key design of the single table is documented in `docs/data-model.md`.

#[cfg(feature = "dynamodb")]
pub mod config_store;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "dynamodb")]
pub mod rate_limit_store;
pub mod request_counts;
#[cfg(feature = "dynamodb")]
pub mod routing_state;
#[cfg(feature = "dynamodb")]
pub mod score_store;
pub mod secrets;
#[cfg(feature = "dynamodb")]
pub mod sla_store;
#[cfg(feature = "sqs")]
pub mod sqs;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;

pub use aws_config;
#[cfg(feature = "dynamodb")]
pub use aws_sdk_dynamodb;
#[cfg(feature = "eventbridge")]
pub use aws_sdk_eventbridge;
#[cfg(feature = "secretsmanager")]
pub use aws_sdk_secretsmanager;
#[cfg(feature = "sqs")]
pub use aws_sdk_sqs;
pub use request_counts::RequestCounts;

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL`, which points every client at an emulator such as moto or LocalStack;
/// `AWS_ENDPOINT_URL_DYNAMODB` and its kind point one service elsewhere).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's default HTTPS client (hyper 1.x, rustls on aws-lc-rs, the system's root
/// certificates, proxy settings from the environment), one for every client of the process,
/// whose TLS set-up waits for the first request ([`FirstRequestTls`]).
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    // As aws-smithy-runtime's `default_https_client` builds it for the latest behavior version
    // (that function is not public).
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(FirstRequestTls(client))
}

/// An HTTP client that sets up TLS on the first request, not when an SDK client is built.
///
/// The SDK's client builds a TLS connector in `validate_base_client_config`, once per SDK
/// client, only to throw it away: that reads and parses the system's root certificates
/// (measured: most of a function's init, docs/performance.md "Cold start"). Here nothing is
/// built then; the first request builds the one connector that the SDK clients sharing this
/// client then reuse (cached per connector settings), with its connection pool.
#[derive(Debug)]
struct FirstRequestTls(SharedHttpClient);

impl HttpClient for FirstRequestTls {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        _: &RuntimeComponentsBuilder,
        _: &ConfigBag,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The SDK clients of a process, each built from one configuration on first use: a function
/// builds only the clients it uses (and links only the SDK crates its features name), and the
/// local stack shares one set among all its functions.
pub struct Clients {
    sdk: aws_config::SdkConfig,
    /// Where the clients report their requests: set by the local stack only, so a Lambda
    /// function's clients carry no interceptor.
    #[cfg_attr(
        not(any(
            feature = "dynamodb",
            feature = "eventbridge",
            feature = "sqs",
            feature = "secretsmanager"
        )),
        allow(dead_code)
    )]
    counts: Option<RequestCounts>,
    #[cfg(feature = "dynamodb")]
    dynamodb: std::sync::OnceLock<aws_sdk_dynamodb::Client>,
    #[cfg(feature = "eventbridge")]
    eventbridge: std::sync::OnceLock<aws_sdk_eventbridge::Client>,
    #[cfg(feature = "sqs")]
    sqs: std::sync::OnceLock<aws_sdk_sqs::Client>,
    #[cfg(feature = "secretsmanager")]
    secretsmanager: std::sync::OnceLock<aws_sdk_secretsmanager::Client>,
}

impl Clients {
    pub fn new(sdk: aws_config::SdkConfig) -> Self {
        Self {
            sdk,
            counts: None,
            #[cfg(feature = "dynamodb")]
            dynamodb: Default::default(),
            #[cfg(feature = "eventbridge")]
            eventbridge: Default::default(),
            #[cfg(feature = "sqs")]
            sqs: Default::default(),
            #[cfg(feature = "secretsmanager")]
            secretsmanager: Default::default(),
        }
    }

    /// The clients of a Lambda function: configured by its environment ([`sdk_config`]).
    pub async fn from_env() -> Self {
        Self::new(sdk_config().await)
    }

    /// Clients that count every request they send in `counts` (tests and benches).
    pub fn counted(sdk: aws_config::SdkConfig, counts: RequestCounts) -> Self {
        Self {
            counts: Some(counts),
            ..Self::new(sdk)
        }
    }

    pub fn sdk(&self) -> &aws_config::SdkConfig {
        &self.sdk
    }

    #[cfg(feature = "dynamodb")]
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let (sdk, counts) = (&self.sdk, &self.counts);
        self.dynamodb
            .get_or_init(|| {
                let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
                if let Some(counts) = counts {
                    config = config.interceptor(counts.interceptor());
                }
                aws_sdk_dynamodb::Client::from_conf(config.build())
            })
            .clone()
    }

    #[cfg(feature = "eventbridge")]
    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        let (sdk, counts) = (&self.sdk, &self.counts);
        self.eventbridge
            .get_or_init(|| {
                let mut config = aws_sdk_eventbridge::config::Builder::from(sdk);
                if let Some(counts) = counts {
                    config = config.interceptor(counts.interceptor());
                }
                aws_sdk_eventbridge::Client::from_conf(config.build())
            })
            .clone()
    }

    #[cfg(feature = "sqs")]
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let (sdk, counts) = (&self.sdk, &self.counts);
        self.sqs
            .get_or_init(|| {
                let mut config = aws_sdk_sqs::config::Builder::from(sdk);
                if let Some(counts) = counts {
                    config = config.interceptor(counts.interceptor());
                }
                aws_sdk_sqs::Client::from_conf(config.build())
            })
            .clone()
    }

    #[cfg(feature = "secretsmanager")]
    pub fn secretsmanager(&self) -> aws_sdk_secretsmanager::Client {
        let (sdk, counts) = (&self.sdk, &self.counts);
        self.secretsmanager
            .get_or_init(|| {
                let mut config = aws_sdk_secretsmanager::config::Builder::from(sdk);
                if let Some(counts) = counts {
                    config = config.interceptor(counts.interceptor());
                }
                aws_sdk_secretsmanager::Client::from_conf(config.build())
            })
            .clone()
    }
}

#[cfg(all(test, feature = "dynamodb"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_sdk_dynamodb::config::{Credentials, Region};
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::retry::RetryConfig;

    use super::*;

    /// How often the SDK asked an HTTP client for what.
    #[derive(Debug, Default)]
    struct Calls {
        validations: AtomicUsize,
        connectors: AtomicUsize,
    }

    /// Stands in for the SDK's HTTPS client, whose validation is where it builds TLS.
    #[derive(Debug)]
    struct Counting(Arc<Calls>);

    #[derive(Debug)]
    struct Unreachable;

    impl HttpConnector for Unreachable {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            HttpConnectorFuture::ready(Err(ConnectorError::io("no network in this test".into())))
        }
    }

    impl HttpClient for Counting {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            self.0.connectors.fetch_add(1, Ordering::SeqCst);
            SharedHttpConnector::new(Unreachable)
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.validations.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn client(http: SharedHttpClient) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-central-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(RetryConfig::disabled())
            .http_client(http)
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    #[tokio::test]
    async fn the_sdk_sets_up_its_http_client_when_a_client_is_built_and_we_do_not() {
        // Without the wrapper the SDK validates (for its own client: builds TLS) right away.
        let plain = Arc::new(Calls::default());
        let _ = client(SharedHttpClient::new(Counting(plain.clone())));
        assert_eq!(plain.validations.load(Ordering::SeqCst), 1);

        let deferred = Arc::new(Calls::default());
        let c = client(SharedHttpClient::new(FirstRequestTls(
            SharedHttpClient::new(Counting(deferred.clone())),
        )));
        assert_eq!(deferred.validations.load(Ordering::SeqCst), 0);
        assert_eq!(deferred.connectors.load(Ordering::SeqCst), 0);

        // The first request reaches the inner client's connector.
        let sent = c.list_tables().send().await;
        assert!(sent.is_err(), "the connector refuses every request");
        assert_eq!(deferred.connectors.load(Ordering::SeqCst), 1);
        assert_eq!(deferred.validations.load(Ordering::SeqCst), 0);
    }
}
