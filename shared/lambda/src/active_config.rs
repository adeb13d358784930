//! The active configuration version, read from the store at most once per TTL: scoring a page
//! view must not cost a DynamoDB read of the model, yet a push takes effect within seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_domain::config::{ConfigError, LeadflowConfig};
use leadflow_domain::ports::{ConfigStore, StoreError};
use tokio::sync::Mutex;

/// A parsed configuration and the version that produced it (recorded with every score and
/// stage change).
#[derive(Debug)]
pub struct LoadedConfig {
    pub version: u64,
    pub config: LeadflowConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ActiveConfigError {
    #[error("no configuration is active yet: push one with `leadflow config push`")]
    NoneActive,
    #[error("the active configuration (version {version}) is invalid: {error}")]
    Invalid { version: u64, error: ConfigError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configuration last read, and when.
type Cached = Option<(Instant, Arc<LoadedConfig>)>;

pub struct ActiveConfig<S> {
    store: S,
    ttl: Duration,
    /// Shared by clones: the steps one invocation chains (score-event's qualification and
    /// routing) read the configuration once.
    cached: Arc<Mutex<Cached>>,
}

impl<S: Clone> Clone for ActiveConfig<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            ttl: self.ttl,
            cached: self.cached.clone(),
        }
    }
}

impl<S: ConfigStore> ActiveConfig<S> {
    pub fn new(store: S, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// With the TTL of the function's `CONFIG_CACHE_SECONDS`.
    pub fn from_env(store: S, env: &crate::config::Env) -> Self {
        Self::new(store, env.config_ttl())
    }

    pub async fn get(&self) -> Result<Arc<LoadedConfig>, ActiveConfigError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, config)) = cached.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(config.clone());
            }
        }
        let stored = self
            .store
            .active()
            .await?
            .ok_or(ActiveConfigError::NoneActive)?;
        // Parsing is skipped when the version did not change since the last look.
        if let Some((_, config)) = cached.as_ref().filter(|(_, c)| c.version == stored.version) {
            let config = config.clone();
            *cached = Some((Instant::now(), config.clone()));
            return Ok(config);
        }
        let config =
            LeadflowConfig::parse(&stored.yaml).map_err(|error| ActiveConfigError::Invalid {
                version: stored.version,
                error,
            })?;
        let loaded = Arc::new(LoadedConfig {
            version: stored.version,
            config,
        });
        *cached = Some((Instant::now(), loaded.clone()));
        Ok(loaded)
    }
}
