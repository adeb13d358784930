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
        .load()
        .await
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
