//! The real handlers of every function template.yaml declares, built in-process from the
//! environment the emulator resolved for them, exactly as their `main.rs` would build them.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use capture_form::{CaptureConfig, CaptureForm};
use crm_callback::CrmCallback;
use crm_webhook::deliver::{Deliver, DeliverySettings};
use crm_webhook::transport::HttpsTransport;
use lambda_http::{Body, Request, Response};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::secrets::{EnvLookup, Secrets};
use leadflow_aws::sqs::{SqsEventQueue, SqsRetryQueue};
use leadflow_lambda::active_config::{ttl_from, ActiveConfig};
use outbox_relay::OutboxRelay;
use qualify::Qualify;
use route::Route;
use score_event::ScoreEvent;

use crate::manifest::{FunctionSpec, Manifest};

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
    /// False for functions whose issue has not landed: their queues are not polled locally.
    pub implemented: bool,
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

/// What the functions that read the scoring model are built from, as their `main.rs` builds it.
type ScoringParts = (DynamoStore, EventBridgePublisher, ActiveConfig<DynamoStore>);

fn scoring_parts(
    dynamo: &leadflow_aws::aws_sdk_dynamodb::Client,
    events: &leadflow_aws::aws_sdk_eventbridge::Client,
    env: &dyn Fn(&'static str) -> Result<String, BuildError>,
    spec: &FunctionSpec,
) -> Result<ScoringParts, BuildError> {
    let store = DynamoStore::new(dynamo.clone(), env("TABLE_NAME")?);
    let ttl = ttl_from(
        spec.environment
            .get("CONFIG_CACHE_SECONDS")
            .map(String::as_str),
    );
    let publisher = EventBridgePublisher::new(events.clone(), env("EVENT_BUS_NAME")?);
    Ok((store.clone(), publisher, ActiveConfig::new(store, ttl)))
}

/// The function's environment as template.yaml resolved it: where `env:NAME` secrets are read.
fn env_lookup(spec: &FunctionSpec) -> EnvLookup {
    let env = spec.environment.clone();
    Arc::new(move |name| env.get(name).cloned())
}

fn config_ttl(spec: &FunctionSpec) -> std::time::Duration {
    ttl_from(
        spec.environment
            .get("CONFIG_CACHE_SECONDS")
            .map(String::as_str),
    )
}

/// Builds every function of the manifest against the emulator described by `sdk`.
pub fn build(
    manifest: &Manifest,
    sdk: &aws_config::SdkConfig,
) -> Result<BTreeMap<String, LocalFunction>, BuildError> {
    let dynamo = leadflow_aws::aws_sdk_dynamodb::Client::new(sdk);
    let events = leadflow_aws::aws_sdk_eventbridge::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let secrets = leadflow_aws::aws_sdk_secretsmanager::Client::new(sdk);
    let mut out = BTreeMap::new();
    for (logical_id, spec) in &manifest.functions {
        let env = |name: &'static str| {
            spec.environment
                .get(name)
                .cloned()
                .ok_or_else(|| BuildError::MissingEnv {
                    function: logical_id.clone(),
                    binary: spec.binary.clone(),
                    name,
                })
        };
        let mut f = LocalFunction {
            logical_id: logical_id.clone(),
            binary: spec.binary.clone(),
            spec: spec.clone(),
            implemented: true,
            http: None,
            sqs: None,
            schedule: None,
        };
        match spec.binary.as_str() {
            "capture-form" => {
                let config = CaptureConfig::new(
                    &env("ALLOWED_ORIGINS").unwrap_or_default(),
                    &env("REDIRECT_ALLOWLIST").unwrap_or_default(),
                    &env("HONEYPOT_FIELD").unwrap_or_else(|_| "_gotcha".into()),
                    &env("REQUIRED_FIELDS").unwrap_or_else(|_| "email".into()),
                )
                .map_err(|e| BuildError::Config {
                    function: logical_id.clone(),
                    reason: e.to_string(),
                })?;
                let mut config = config;
                config.config_cache = ttl_from(
                    spec.environment
                        .get("CONFIG_CACHE_SECONDS")
                        .map(String::as_str),
                );
                let handler = Arc::new(CaptureForm::new(
                    DynamoStore::new(dynamo.clone(), env("TABLE_NAME")?),
                    EventBridgePublisher::new(events.clone(), env("EVENT_BUS_NAME")?),
                    SqsEventQueue::new(sqs.clone(), env("SCORE_EVENT_QUEUE_URL")?),
                    config,
                ));
                f.http = Some(Arc::new(move |req| {
                    let handler = handler.clone();
                    Box::pin(async move { handler.handle(req).await })
                }));
            }
            "outbox-relay" => {
                let relay = Arc::new(OutboxRelay::new(
                    DynamoStore::new(dynamo.clone(), env("TABLE_NAME")?),
                    EventBridgePublisher::new(events.clone(), env("EVENT_BUS_NAME")?),
                ));
                f.schedule = Some(Arc::new(move |event| {
                    let relay = relay.clone();
                    Box::pin(async move {
                        relay
                            .handle(event)
                            .await
                            .map(|r| format!("published {}", r.published))
                            .map_err(|e| e.to_string())
                    })
                }));
            }
            "sla-tick" => {
                f.implemented = sla_tick::IMPLEMENTED;
                f.schedule = Some(Arc::new(|event| {
                    Box::pin(async move {
                        sla_tick::handle(event).await;
                        Ok("ticked".to_owned())
                    })
                }));
            }
            "score-event" => {
                let handler = Arc::new(
                    scoring_parts(&dynamo, &events, &env, spec)
                        .map(|(s, p, c)| ScoreEvent::new(s, p, c))?,
                );
                f.sqs = Some(Arc::new(move |e| {
                    let handler = handler.clone();
                    Box::pin(async move { handler.handle(e).await })
                }));
            }
            "qualify" => {
                let handler = Arc::new(
                    scoring_parts(&dynamo, &events, &env, spec)
                        .map(|(s, p, c)| Qualify::new(s, p, c))?,
                );
                f.sqs = Some(Arc::new(move |e| {
                    let handler = handler.clone();
                    Box::pin(async move { handler.handle(e).await })
                }));
            }
            "route" => {
                let handler = Arc::new(
                    scoring_parts(&dynamo, &events, &env, spec)
                        .map(|(s, p, c)| Route::new(s, p, c))?,
                );
                f.sqs = Some(Arc::new(move |e| {
                    let handler = handler.clone();
                    Box::pin(async move { handler.handle(e).await })
                }));
            }
            "crm-webhook" => {
                f.implemented = crm_webhook::IMPLEMENTED;
                let store = DynamoStore::new(dynamo.clone(), env("TABLE_NAME")?);
                let lookup = env_lookup(spec);
                let transport = HttpsTransport::new().map_err(|e| BuildError::Config {
                    function: logical_id.clone(),
                    reason: e.to_string(),
                })?;
                let handler = Arc::new(Deliver::new(
                    store.clone(),
                    transport,
                    SqsRetryQueue::new(sqs.clone(), env("QUEUE_URL")?, env("DLQ_URL")?),
                    Secrets::new(lookup.clone(), secrets.clone()),
                    ActiveConfig::new(store, config_ttl(spec)),
                    DeliverySettings::from_lookup(|name| lookup(name)),
                ));
                f.sqs = Some(Arc::new(move |e| {
                    let handler = handler.clone();
                    Box::pin(async move { handler.handle(e).await })
                }));
            }
            "crm-callback" => {
                let store = DynamoStore::new(dynamo.clone(), env("TABLE_NAME")?);
                let handler = Arc::new(CrmCallback::new(
                    store.clone(),
                    EventBridgePublisher::new(events.clone(), env("EVENT_BUS_NAME")?),
                    Secrets::new(env_lookup(spec), secrets.clone()),
                    ActiveConfig::new(store, config_ttl(spec)),
                ));
                f.http = Some(Arc::new(move |req| {
                    let handler = handler.clone();
                    Box::pin(async move { handler.handle(req).await })
                }));
            }
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
