//! A provisioned stack with its functions: what `cargo dev` runs and what each integration test
//! gets for itself.

use std::collections::BTreeMap;
use std::time::Duration;

use leadflow_aws::RequestCounts;

use crate::functions::{self, LocalFunction, ScheduleHandler};
use crate::http::Router;
use crate::manifest::{Manifest, ProvisionError};
use crate::poller::Poller;
use crate::schedule::rate_interval;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Build(#[from] functions::BuildError),
    #[error("setting the CRM webhook signing secret on the emulator failed: {0}")]
    Secret(String),
}

/// A local-only parameter: the value of the template's CRM webhook signing secret
/// (`CrmWebhookSigningSecret`, which the emulator otherwise fills with a generated value), so
/// that a CRM receiver on this machine and the tests know it. Not a template parameter: a
/// deployment never passes the value through CloudFormation.
pub const WEBHOOK_SECRET_PARAM: &str = "CrmWebhookSecret";

/// The variable through which the functions find the signing secret (template.yaml).
const WEBHOOK_SECRET_ARN_VAR: &str = "CRM_WEBHOOK_SECRET_ARN";

pub struct LocalStack {
    pub manifest: Manifest,
    pub sdk: aws_config::SdkConfig,
    /// By binary name (`capture-form`, ...).
    pub functions: BTreeMap<String, LocalFunction>,
    /// The AWS requests of the functions' SDK clients, by service and operation (not those of
    /// the pollers, schedules or `sdk`, which stand in for AWS itself or for a test).
    pub requests: RequestCounts,
}

/// A schedule the local stack runs.
pub struct LocalSchedule {
    pub function: String,
    pub rule_name: String,
    pub expression: String,
    pub every: Option<Duration>,
    pub handler: ScheduleHandler,
}

/// Puts `value` into the stack's signing secret, found by the ARN the functions are given.
async fn set_webhook_secret(
    manifest: &Manifest,
    sdk: &aws_config::SdkConfig,
    value: &str,
) -> Result<(), StackError> {
    let arn = manifest
        .functions
        .values()
        .find_map(|f| f.environment.get(WEBHOOK_SECRET_ARN_VAR))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            StackError::Secret(format!(
                "no function of template.yaml is given {WEBHOOK_SECRET_ARN_VAR}"
            ))
        })?;
    leadflow_aws::aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .map_err(|e| StackError::Secret(leadflow_domain::ports::error_chain(&e)))?;
    Ok(())
}

impl LocalStack {
    /// Provisions template.yaml as `stack_name` on `endpoint` and builds every function.
    pub async fn provision(
        endpoint: &str,
        stack_name: &str,
        params: &[String],
        reuse: bool,
    ) -> Result<Self, StackError> {
        let prefix = format!("{WEBHOOK_SECRET_PARAM}=");
        let webhook_secret = params
            .iter()
            .rev()
            .find_map(|p| p.strip_prefix(&prefix))
            .map(str::to_owned);
        let params: Vec<String> = params
            .iter()
            .filter(|p| !p.starts_with(&prefix))
            .cloned()
            .collect();
        let (endpoint_owned, name) = (endpoint.to_owned(), stack_name.to_owned());
        let manifest = tokio::task::spawn_blocking(move || {
            Manifest::provision(&endpoint_owned, &name, &params, reuse)
        })
        .await
        .map_err(|e| ProvisionError::Failed {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })??;
        let sdk = crate::sdk_config(endpoint, &manifest.region).await;
        if let Some(value) = webhook_secret.filter(|v| !v.is_empty()) {
            set_webhook_secret(&manifest, &sdk, &value).await?;
        }
        let requests = RequestCounts::new();
        let functions = functions::build(&manifest, &sdk, &requests)?;
        Ok(Self {
            manifest,
            sdk,
            functions,
            requests,
        })
    }

    /// Sets `name` in the environment of every function whose template gives it (e.g. the
    /// local API's address for `PUBLIC_API_URL`) and rebuilds the functions.
    pub fn override_env(&mut self, name: &str, value: &str) -> Result<(), StackError> {
        for spec in self.manifest.functions.values_mut() {
            if let Some(v) = spec.environment.get_mut(name) {
                *v = value.to_owned();
            }
        }
        self.functions = functions::build(&self.manifest, &self.sdk, &self.requests)?;
        Ok(())
    }

    /// Runs the functions as a deployment would: not in local mode, so crm-webhook sends only
    /// to public https endpoints (what the tests of that refusal need).
    pub fn run_as_deployed(&mut self) -> Result<(), StackError> {
        for spec in self.manifest.functions.values_mut() {
            spec.environment
                .insert(functions::LOCAL_MODE_VAR.to_owned(), "false".to_owned());
        }
        self.functions = functions::build(&self.manifest, &self.sdk, &self.requests)?;
        Ok(())
    }

    /// Local mode unless the stack runs as deployed ([`LocalStack::run_as_deployed`]).
    pub fn endpoint_mode(&self) -> leadflow_domain::endpoint::EndpointMode {
        let deployed = self.manifest.functions.values().any(|f| {
            f.environment
                .get(functions::LOCAL_MODE_VAR)
                .is_some_and(|v| v == "false")
        });
        if deployed {
            leadflow_domain::endpoint::EndpointMode::Public
        } else {
            leadflow_domain::endpoint::EndpointMode::Local
        }
    }

    pub fn function(&self, binary: &str) -> Option<&LocalFunction> {
        self.functions.get(binary)
    }

    /// The HTTP routes of the template, each served by its function behind its throttle.
    pub fn router(&self) -> Router {
        let routes = self
            .functions
            .values()
            .filter_map(|f| f.http.clone().map(|h| (f, h)))
            .flat_map(|(f, h)| {
                f.spec
                    .http_routes
                    .iter()
                    .map(move |r| (r.clone(), h.clone()))
            })
            .collect();
        Router::new(routes, &self.manifest.http_throttle)
    }

    /// A poller for each queue → function mapping of the template.
    pub fn pollers(&self) -> Vec<Poller> {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        self.functions
            .values()
            .filter_map(|f| f.sqs.clone().map(|h| (f, h)))
            .flat_map(|(f, handler)| {
                let client = client.clone();
                f.spec.queues.iter().map(move |source| Poller {
                    client: client.clone(),
                    queue_arn: String::new(),
                    source: source.clone(),
                    handler: handler.clone(),
                })
            })
            .map(|mut p| {
                p.queue_arn = self
                    .manifest
                    .queue_arns
                    .get(&p.source.queue_logical_id)
                    .cloned()
                    .unwrap_or_default();
                p
            })
            .collect()
    }

    pub fn schedules(&self) -> Vec<LocalSchedule> {
        self.functions
            .values()
            .filter_map(|f| f.schedule.clone().map(|h| (f, h)))
            .flat_map(|(f, handler)| {
                f.spec.schedules.iter().map(move |s| LocalSchedule {
                    function: f.logical_id.clone(),
                    rule_name: s.rule_name.clone(),
                    expression: s.expression.clone(),
                    every: rate_interval(&s.expression),
                    handler: handler.clone(),
                })
            })
            .collect()
    }
}
