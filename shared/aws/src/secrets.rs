//! Secret references (`env:NAME`, Secrets Manager ARNs) resolved to their values, cached for
//! the life of the process: a warm invocation never asks again. A rotated secret is picked up
//! by new execution environments, and by warm ones when a signature stops matching (`refresh`,
//! at most once every 5 s: forged calls cannot turn into a fetch each). Failed reads are
//! remembered for 30 s for the same reason.

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
    cache: Arc<Mutex<HashMap<String, Cached>>>,
    refreshed: Arc<Mutex<Option<Instant>>>,
}

/// A value, or a failure remembered for a short while (an unset or unreadable secret must not
/// cost a Secrets Manager call on every request).
#[derive(Clone)]
enum Cached {
    Value(String),
    Failed {
        missing: bool,
        reason: String,
        at: Instant,
    },
}

/// How long a failed read is answered from the cache.
const FAILURE_TTL: Duration = Duration::from_secs(30);

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
            // A deployment gives the function the secret's ARN (`NAME_ARN`), never its value;
            // a value in `NAME` itself is for tests and local runs without Secrets Manager.
            if let Some(value) = (self.env)(name).filter(|v| !v.is_empty()) {
                return Ok(value);
            }
            return match (self.env)(&format!("{name}_ARN")).filter(|v| !v.is_empty()) {
                Some(arn) if is_secret_arn(&arn) => self.fetch_arn(&arn, reference).await,
                _ => Err(SecretError::Missing(reference.to_owned())),
            };
        }
        if is_secret_arn(reference) {
            return self.fetch_arn(reference, reference).await;
        }
        Err(SecretError::Missing(reference.to_owned()))
    }

    /// The value of the Secrets Manager secret `arn`; errors name `reference` (what the
    /// configuration says).
    #[allow(unused_variables)]
    async fn fetch_arn(&self, arn: &str, reference: &str) -> Result<String, SecretError> {
        #[cfg(feature = "secretsmanager")]
        {
            let Some(client) = &self.client else {
                return Err(SecretError::Missing(reference.to_owned()));
            };
            let out = client
                .get_secret_value()
                .secret_id(arn)
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
                            reason: leadflow_domain::ports::error_chain(&e),
                        }
                    }
                })?;
            return out
                .secret_string()
                .map(str::to_owned)
                .ok_or_else(|| SecretError::Missing(reference.to_owned()));
        }
        #[allow(unreachable_code)]
        Err(SecretError::Missing(reference.to_owned()))
    }
}

fn is_secret_arn(s: &str) -> bool {
    s.starts_with("arn:aws") && s.contains(":secretsmanager:")
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
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(reference).cloned());
        match cached {
            Some(Cached::Value(v)) => return Ok(v),
            Some(Cached::Failed {
                missing,
                reason,
                at,
            }) if at.elapsed() < FAILURE_TTL => {
                return Err(if missing {
                    SecretError::Missing(reference.to_owned())
                } else {
                    SecretError::Unavailable {
                        reference: reference.to_owned(),
                        reason,
                    }
                })
            }
            _ => {}
        }
        let result = self.fetch(reference).await;
        let entry = match &result {
            Ok(v) => Cached::Value(v.clone()),
            Err(SecretError::Missing(_)) => Cached::Failed {
                missing: true,
                reason: String::new(),
                at: Instant::now(),
            },
            Err(SecretError::Unavailable { reason, .. }) => Cached::Failed {
                missing: false,
                reason: reason.clone(),
                at: Instant::now(),
            },
        };
        if let Ok(mut c) = self.cache.lock() {
            c.insert(reference.to_owned(), entry);
        }
        result
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
            // Counted per reference (an unset NAME is followed by a look at NAME_ARN).
            if !name.ends_with("_ARN") {
                *counted.lock().unwrap() += 1;
            }
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
        // A failed read is remembered too.
        assert!(secrets.secret("env:OTHER").await.is_err());
        assert_eq!(*calls.lock().unwrap(), 2, "one read of OTHER");
        // A refresh reads again, but a second one right after it does not.
        secrets.refresh();
        secrets.secret("env:CRM_SECRET").await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 3, "one miss for OTHER, one re-read");
        secrets.refresh();
        secrets.secret("env:CRM_SECRET").await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn an_env_reference_is_read_through_the_arn_the_deployment_gives() {
        // As deployed: CRM_WEBHOOK_SECRET_ARN holds the ARN and the value is not in the
        // environment. Without a Secrets Manager client the ARN is looked up (and missing),
        // never handed out as if it were the secret.
        let arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:s-CrmWebhookSigningSecret-AbCdEf";
        let secrets = Secrets::from_env(Arc::new(move |name| {
            (name == "CRM_WEBHOOK_SECRET_ARN").then(|| arn.to_owned())
        }));
        assert!(matches!(
            secrets.secret("env:CRM_WEBHOOK_SECRET").await,
            Err(SecretError::Missing(r)) if r == "env:CRM_WEBHOOK_SECRET"
        ));
        // Something else in NAME_ARN is not followed.
        let secrets = Secrets::from_env(Arc::new(|name| {
            (name == "X_ARN").then(|| "whsec_not-an-arn".to_owned())
        }));
        assert!(secrets.secret("env:X").await.is_err());
    }
}
