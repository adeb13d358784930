//! A provisioned stack with its functions: what `cargo dev` runs and what each integration test
//! gets for itself.

use std::collections::BTreeMap;
use std::time::Duration;

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
}

pub struct LocalStack {
    pub manifest: Manifest,
    pub sdk: aws_config::SdkConfig,
    /// By binary name (`capture-form`, ...).
    pub functions: BTreeMap<String, LocalFunction>,
}

/// A schedule the local stack runs.
pub struct LocalSchedule {
    pub function: String,
    pub rule_name: String,
    pub expression: String,
    pub every: Option<Duration>,
    pub handler: ScheduleHandler,
}

impl LocalStack {
    /// Provisions template.yaml as `stack_name` on `endpoint` and builds every function.
    pub async fn provision(
        endpoint: &str,
        stack_name: &str,
        params: &[String],
        reuse: bool,
    ) -> Result<Self, StackError> {
        let (endpoint_owned, name, params) =
            (endpoint.to_owned(), stack_name.to_owned(), params.to_vec());
        let manifest = tokio::task::spawn_blocking(move || {
            Manifest::provision(&endpoint_owned, &name, &params, reuse)
        })
        .await
        .map_err(|e| ProvisionError::Failed {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })??;
        let sdk = crate::sdk_config(endpoint, &manifest.region).await;
        let functions = functions::build(&manifest, &sdk)?;
        Ok(Self {
            manifest,
            sdk,
            functions,
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
        self.functions = functions::build(&self.manifest, &self.sdk)?;
        Ok(())
    }

    pub fn function(&self, binary: &str) -> Option<&LocalFunction> {
        self.functions.get(binary)
    }

    /// The HTTP routes of the template, each served by its function.
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
        Router::new(routes)
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
