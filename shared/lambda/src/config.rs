//! A function's environment, as template.yaml declares it: the process environment in Lambda,
//! the environment the emulator resolved for the function in the local stack. Every function
//! is built from one, by its crate's `from_env`, so `main.rs` and the local stack wire it alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use leadflow_aws::secrets::EnvLookup;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where a function reads its settings.
#[derive(Clone)]
pub struct Env {
    lookup: EnvLookup,
}

impl Env {
    /// The process environment (a Lambda function's).
    pub fn process() -> Self {
        Self {
            lookup: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed environment (the local stack's resolution of template.yaml, a test's).
    pub fn from_map(vars: BTreeMap<String, String>) -> Self {
        Self {
            lookup: Arc::new(move |name| vars.get(name).cloned()),
        }
    }

    /// The lookup itself, for adapters that resolve `env:NAME` references later (secrets).
    pub fn lookup(&self) -> EnvLookup {
        self.lookup.clone()
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// The value, unless unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// How long the active configuration is used before the store is asked again
    /// (`CONFIG_CACHE_SECONDS`, else [`DEFAULT_CONFIG_TTL`]).
    pub fn config_ttl(&self) -> Duration {
        self.optional("CONFIG_CACHE_SECONDS")
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_CONFIG_TTL)
    }
}

/// How long a loaded configuration version is used when the environment does not say.
pub const DEFAULT_CONFIG_TTL: Duration = Duration::from_secs(15);

/// A comma-separated list; empty entries are dropped.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn blank_values_count_as_unset() {
        let e = env(&[("TABLE_NAME", "t"), ("EMPTY", "  ")]);
        assert_eq!(e.required("TABLE_NAME").unwrap(), "t");
        assert!(matches!(
            e.required("EMPTY"),
            Err(ConfigError::Missing("EMPTY"))
        ));
        assert_eq!(e.optional("NOPE"), None);
    }

    #[test]
    fn the_config_ttl_defaults_when_unusable() {
        assert_eq!(
            env(&[("CONFIG_CACHE_SECONDS", "0")]).config_ttl(),
            Duration::ZERO
        );
        assert_eq!(
            env(&[("CONFIG_CACHE_SECONDS", "90")]).config_ttl(),
            Duration::from_secs(90)
        );
        assert_eq!(
            env(&[("CONFIG_CACHE_SECONDS", "soon")]).config_ttl(),
            DEFAULT_CONFIG_TTL
        );
        assert_eq!(env(&[]).config_ttl(), DEFAULT_CONFIG_TTL);
    }
}
