//! The key capture-form signs and checks visitor tokens with. `VISITOR_TOKEN_SECRET` names it
//! as a secret reference: the ARN of the secret template.yaml generates (Secrets Manager) in
//! AWS, `env:NAME` in the local stack. It is read on first use and kept for the life of the
//! process; a failed read is retried after the secrets cache's 30 s.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use leadflow_aws::secrets::Secrets;
use leadflow_aws::Clients;
use leadflow_domain::ports::{SecretError, SecretSource};
use leadflow_domain::visitor_token::{
    VisitorToken, VisitorTokenKey, VisitorTokenKeyError, VISITOR_TOKEN_FIELD,
};
use leadflow_domain::LeadId;
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::wiring;
use serde_json::json;

/// The environment variable holding the key's secret reference.
pub const VISITOR_TOKEN_SECRET: &str = "VISITOR_TOKEN_SECRET";

/// Where the key comes from, and the key once read.
pub struct VisitorTokens {
    source: Option<(Secrets, String)>,
    key: OnceLock<VisitorTokenKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no visitor-token secret is configured")]
    NotConfigured,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the visitor-token secret is unusable: {0}")]
    Unusable(#[from] VisitorTokenKeyError),
}

impl VisitorTokens {
    /// No key: no tokens are issued, and events carrying one are refused.
    pub fn none() -> Self {
        Self {
            source: None,
            key: OnceLock::new(),
        }
    }

    /// The key behind `reference` (`env:NAME` or a Secrets Manager ARN), read through `secrets`.
    pub fn new(secrets: Secrets, reference: impl Into<String>) -> Self {
        Self {
            source: Some((secrets, reference.into())),
            key: OnceLock::new(),
        }
    }

    /// `VISITOR_TOKEN_SECRET` (required: template.yaml and the local stack set it).
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let reference = env.required(VISITOR_TOKEN_SECRET)?;
        if !(reference.starts_with("env:") || reference.starts_with("arn:aws")) {
            return Err(ConfigError::Invalid {
                name: VISITOR_TOKEN_SECRET,
                reason: "must be a secret reference: env:NAME or a Secrets Manager ARN".into(),
            });
        }
        Ok(Self::new(wiring::secrets(aws, env), reference))
    }

    pub async fn key(&self) -> Result<VisitorTokenKey, KeyError> {
        if let Some(key) = self.key.get() {
            return Ok(key.clone());
        }
        let (secrets, reference) = self.source.as_ref().ok_or(KeyError::NotConfigured)?;
        let key = VisitorTokenKey::parse(&secrets.secret(reference).await?)?;
        Ok(self.key.get_or_init(|| key).clone())
    }

    /// Adds `visitor_token` and `visitor_token_expires_at` to a capture answer. The token names
    /// `created`, the lead this submission created; a submission that created none (a known
    /// e-mail, a honeypot hit) gets a token of the same form for an id that names no lead, so
    /// the answer does not tell the two apart and a resubmission gains no hold on someone
    /// else's lead. Without a key the lead is still captured, and the answer has no token.
    pub async fn add_to(
        &self,
        mut answer: serde_json::Value,
        created: Option<LeadId>,
        now: DateTime<Utc>,
    ) -> serde_json::Value {
        match self.key().await {
            Ok(key) => {
                let lead = created.unwrap_or_else(|| LeadId::new_at(now));
                let token = VisitorToken::issue(&key, lead, now);
                answer[VISITOR_TOKEN_FIELD] = json!(token.as_str());
                answer["visitor_token_expires_at"] = json!(token.expires_at());
            }
            Err(KeyError::NotConfigured) => {}
            Err(err) => tracing::error!(error = %err, "no visitor token issued"),
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const KEY: &str = "a-test-key-of-at-least-thirty-two-bytes";

    fn tokens(value: &'static str) -> VisitorTokens {
        let secrets = Secrets::from_env(Arc::new(move |name| {
            (name == "VISITOR_TOKEN_KEY").then(|| value.to_owned())
        }));
        VisitorTokens::new(secrets, "env:VISITOR_TOKEN_KEY")
    }

    #[tokio::test]
    async fn the_answer_gets_a_token_for_the_created_lead_only() {
        let now = Utc::now();
        let lead = LeadId::new_at(now);
        let key = VisitorTokenKey::parse(KEY).unwrap();
        let t = tokens(KEY);
        let created = t
            .add_to(json!({"status": "accepted"}), Some(lead), now)
            .await;
        let token = created[VISITOR_TOKEN_FIELD].as_str().unwrap();
        let checked = VisitorToken::verify(&key, token, now).unwrap();
        assert_eq!(checked.lead_id(), lead);
        assert_eq!(
            created["visitor_token_expires_at"],
            json!(checked.expires_at())
        );
        let again = t.add_to(json!({"status": "accepted"}), None, now).await;
        let other = VisitorToken::verify(&key, again[VISITOR_TOKEN_FIELD].as_str().unwrap(), now);
        assert_ne!(other.unwrap().lead_id(), lead, "a fresh id of no lead");
        assert_eq!(
            token.len(),
            again[VISITOR_TOKEN_FIELD].as_str().unwrap().len()
        );
    }

    #[tokio::test]
    async fn without_a_usable_key_the_answer_has_no_token() {
        let now = Utc::now();
        for t in [VisitorTokens::none(), tokens("too short")] {
            let answer = t.add_to(json!({"status": "accepted"}), None, now).await;
            assert_eq!(answer, json!({"status": "accepted"}));
        }
        assert!(matches!(
            tokens("too short").key().await,
            Err(KeyError::Unusable(_))
        ));
    }

    #[test]
    fn the_reference_must_name_a_secret() {
        let env = |v: &str| Env::from_map([(VISITOR_TOKEN_SECRET.to_owned(), v.to_owned())].into());
        let aws = Clients::new(leadflow_aws::aws_config::SdkConfig::builder().build());
        assert!(
            VisitorTokens::from_env(&aws, &env(KEY)).is_err(),
            "a key, not a reference"
        );
        assert!(VisitorTokens::from_env(&aws, &env("env:VISITOR_TOKEN_KEY")).is_ok());
        assert!(VisitorTokens::from_env(&aws, &env("")).is_err());
    }
}
