//! Secret references (`env:NAME`, Secrets Manager ARNs) resolved to their values, cached for
//! the life of the process: a warm invocation never asks again. A rotated secret is picked up
//! by new execution environments, and by warm ones when a signature stops matching (`refresh`,
//! at most once every 5 s: forged calls cannot turn into a fetch each).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadflow_domain::ports::{SecretError, SecretSource};

/// Looks up an environment variable (the function's environment; a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub struct Secrets {
    env: EnvLookup,
    #[cfg(feature = "secretsmanager")]
    client: Option<aws_sdk_secretsmanager::Client>,
    cache: Arc<Mutex<HashMap<String, String>>>,
    refreshed: Arc<Mutex<Option<Instant>>>,
}

/// How often a refresh may empty the cache.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

impl Secrets {
    /// Secrets from the process environment only.
    pub fn from_env(env: EnvLookup) -> Self {
        Self {
            env,
            #[cfg(feature = "secretsmanager")]
            client: None,
            cache: Arc::default(),
            refreshed: Arc::default(),
        }
    }

    /// Secrets from the environment and from Secrets Manager.
    #[cfg(feature = "secretsmanager")]
    pub fn new(env: EnvLookup, client: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            env,
            client: Some(client),
            cache: Arc::default(),
            refreshed: Arc::default(),
        }
    }

    /// The process environment, as a lookup.
    pub fn process_env() -> EnvLookup {
        Arc::new(|name| std::env::var(name).ok())
    }

    async fn fetch(&self, reference: &str) -> Result<String, SecretError> {
        if let Some(name) = reference.strip_prefix("env:") {
            return (self.env)(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SecretError::Missing(reference.to_owned()));
        }
        #[cfg(feature = "secretsmanager")]
        if reference.starts_with("arn:aws") && reference.contains(":secretsmanager:") {
            let Some(client) = &self.client else {
                return Err(SecretError::Missing(reference.to_owned()));
            };
            let out = client
                .get_secret_value()
                .secret_id(reference)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception())
                    {
                        SecretError::Missing(reference.to_owned())
                    } else {
                        SecretError::Unavailable {
                            reference: reference.to_owned(),
                            reason: crate::describe(&e),
                        }
                    }
                })?;
            return out
                .secret_string()
                .map(str::to_owned)
                .ok_or_else(|| SecretError::Missing(reference.to_owned()));
        }
        Err(SecretError::Missing(reference.to_owned()))
    }
}

impl SecretSource for Secrets {
    fn refresh(&self) {
        let Ok(mut last) = self.refreshed.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    async fn secret(&self, reference: &str) -> Result<String, SecretError> {
        if let Some(v) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(reference).cloned())
        {
            return Ok(v);
        }
        let value = self.fetch(reference).await?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(reference.to_owned(), value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn env_references_read_the_given_environment_and_are_cached() {
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let secrets = Secrets::from_env(Arc::new(move |name| {
            *counted.lock().unwrap() += 1;
            (name == "CRM_SECRET").then(|| "whsec_x".to_owned())
        }));
        assert_eq!(secrets.secret("env:CRM_SECRET").await.unwrap(), "whsec_x");
        assert_eq!(secrets.secret("env:CRM_SECRET").await.unwrap(), "whsec_x");
        assert_eq!(*calls.lock().unwrap(), 1);
        assert!(matches!(
            secrets.secret("env:OTHER").await,
            Err(SecretError::Missing(r)) if r == "env:OTHER"
        ));
        assert!(secrets.secret("plain").await.is_err());
        // A refresh reads again, but a second one right after it does not.
        secrets.refresh();
        secrets.secret("env:CRM_SECRET").await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 3, "one miss for OTHER, one re-read");
        secrets.refresh();
        secrets.secret("env:CRM_SECRET").await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 3);
    }
}
