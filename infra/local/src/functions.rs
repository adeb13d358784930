//! The real handlers of every function template.yaml declares, built in-process from the
//! environment the emulator resolved for them by the same `from_env` their `main.rs` calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use capture_form::CaptureForm;
use crm_callback::CrmCallback;
use crm_webhook::deliver::Deliver;
use lambda_http::{Body, Request, Response};
use lead_api::LeadApi;
use leadflow_aws::{Clients, RequestCounts};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::run::{HttpFunction, ScheduledFunction, SqsFunction};
use outbox_relay::OutboxRelay;
use qualify::Qualify;
use route::Route;
use score_event::ScoreEvent;
use sla_tick::SlaTick;

use crate::manifest::{FunctionSpec, Manifest};

/// The variable that marks a function as running on the local stack (see
/// `crm_webhook::deliver::endpoint_mode`).
pub const LOCAL_MODE_VAR: &str = "LEADFLOW_LOCAL";

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type HttpHandler = Arc<dyn Fn(Request) -> BoxFuture<Response<Body>> + Send + Sync>;
pub type SqsHandler = Arc<dyn Fn(SqsEvent) -> BoxFuture<SqsBatchResponse> + Send + Sync>;
pub type ScheduleHandler = Arc<
    dyn Fn(EventBridgeEvent<serde_json::Value>) -> BoxFuture<Result<String, String>> + Send + Sync,
>;

/// One function of the template, ready to be invoked by its triggers.
#[derive(Clone)]
pub struct LocalFunction {
    pub logical_id: String,
    pub binary: String,
    pub spec: FunctionSpec,
    pub http: Option<HttpHandler>,
    pub sqs: Option<SqsHandler>,
    pub schedule: Option<ScheduleHandler>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("function {function} ({binary}) needs environment variable {name}, which template.yaml does not give it")]
    MissingEnv {
        function: String,
        binary: String,
        name: &'static str,
    },
    #[error("function {function}: {reason}")]
    Config { function: String, reason: String },
    #[error("template.yaml declares function {function} with binary {binary:?}, which the local stack does not know")]
    Unknown { function: String, binary: String },
}

fn http<F: HttpFunction + 'static>(f: F) -> Option<HttpHandler> {
    let f = Arc::new(f);
    Some(Arc::new(move |req| {
        let f = f.clone();
        Box::pin(async move { f.handle(req).await })
    }))
}

fn sqs<F: SqsFunction + 'static>(f: F) -> Option<SqsHandler> {
    let f = Arc::new(f);
    Some(Arc::new(move |event| {
        let f = f.clone();
        Box::pin(async move { f.handle(event).await })
    }))
}

fn schedule<F: ScheduledFunction + 'static>(f: F) -> Option<ScheduleHandler> {
    let f = Arc::new(f);
    Some(Arc::new(move |event| {
        let f = f.clone();
        Box::pin(async move { f.tick(event).await })
    }))
}

/// Builds every function of the manifest against the emulator described by `sdk`; the
/// functions share one set of SDK clients, which count their requests in `counts`.
pub fn build(
    manifest: &Manifest,
    sdk: &aws_config::SdkConfig,
    counts: &RequestCounts,
) -> Result<BTreeMap<String, LocalFunction>, BuildError> {
    let aws = Clients::counted(sdk.clone(), counts.clone());
    let mut out = BTreeMap::new();
    for (logical_id, spec) in &manifest.functions {
        let mut vars: BTreeMap<String, String> = spec.environment.clone().into_iter().collect();
        // Local mode (crm-webhook sends to a CRM receiver on this machine over http), unless
        // the stack runs as deployed (`LocalStack::run_as_deployed`). The template never sets it.
        vars.entry(LOCAL_MODE_VAR.to_owned())
            .or_insert_with(|| "true".to_owned());
        let env = Env::from_map(vars);
        let failed = |e: ConfigError| match e {
            ConfigError::Missing(name) => BuildError::MissingEnv {
                function: logical_id.clone(),
                binary: spec.binary.clone(),
                name,
            },
            e => BuildError::Config {
                function: logical_id.clone(),
                reason: e.to_string(),
            },
        };
        let mut f = LocalFunction {
            logical_id: logical_id.clone(),
            binary: spec.binary.clone(),
            spec: spec.clone(),
            http: None,
            sqs: None,
            schedule: None,
        };
        match spec.binary.as_str() {
            "capture-form" => f.http = http(CaptureForm::from_env(&aws, &env).map_err(failed)?),
            "lead-api" => f.http = http(LeadApi::from_env(&aws, &env).map_err(failed)?),
            "crm-callback" => f.http = http(CrmCallback::from_env(&aws, &env).map_err(failed)?),
            "score-event" => f.sqs = sqs(ScoreEvent::from_env(&aws, &env).map_err(failed)?),
            "qualify" => f.sqs = sqs(Qualify::from_env(&aws, &env).map_err(failed)?),
            "route" => f.sqs = sqs(Route::from_env(&aws, &env).map_err(failed)?),
            "crm-webhook" => f.sqs = sqs(Deliver::from_env(&aws, &env).map_err(failed)?),
            "outbox-relay" => {
                f.schedule = schedule(OutboxRelay::from_env(&aws, &env).map_err(failed)?)
            }
            "sla-tick" => f.schedule = schedule(SlaTick::from_env(&aws, &env).map_err(failed)?),
            other => {
                return Err(BuildError::Unknown {
                    function: logical_id.clone(),
                    binary: other.to_owned(),
                })
            }
        }
        out.insert(spec.binary.clone(), f);
    }
    Ok(out)
}
