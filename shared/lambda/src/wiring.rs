//! The adapters functions are built from, each from the function's environment: the one place
//! that knows which variable names which resource.

use leadflow_aws::dynamo::DynamoStore;
#[cfg(feature = "eventbridge")]
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;

#[cfg(feature = "eventbridge")]
use crate::active_config::ActiveConfig;
use crate::config::{ConfigError, Env};

/// The leads table (`TABLE_NAME`).
pub fn store(aws: &Clients, env: &Env) -> Result<DynamoStore, ConfigError> {
    Ok(DynamoStore::new(
        aws.dynamodb(),
        env.required("TABLE_NAME")?,
    ))
}

/// The event bus (`EVENT_BUS_NAME`).
#[cfg(feature = "eventbridge")]
pub fn publisher(aws: &Clients, env: &Env) -> Result<EventBridgePublisher, ConfigError> {
    Ok(EventBridgePublisher::new(
        aws.eventbridge(),
        env.required("EVENT_BUS_NAME")?,
    ))
}

/// Secret references: `env:NAME` from the function's environment, Secrets Manager ARNs.
#[cfg(feature = "secretsmanager")]
pub fn secrets(aws: &Clients, env: &Env) -> leadflow_aws::secrets::Secrets {
    leadflow_aws::secrets::Secrets::new(env.lookup(), aws.secretsmanager())
}

/// What the functions that change leads are built from: the table, the bus, and the active
/// configuration read through the table.
#[cfg(feature = "eventbridge")]
pub struct Backend {
    pub store: DynamoStore,
    pub publisher: EventBridgePublisher,
    pub config: ActiveConfig<DynamoStore>,
}

#[cfg(feature = "eventbridge")]
impl Backend {
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let store = store(aws, env)?;
        Ok(Self {
            publisher: publisher(aws, env)?,
            config: ActiveConfig::from_env(store.clone(), env),
            store,
        })
    }
}
