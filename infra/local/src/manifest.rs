//! What `template.yaml` declares, as provisioned on the emulator by `provision.py`: the
//! physical names of its resources and, per function, its environment, routes, queues and
//! schedules. The local runner learns everything from here; there is no second list.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Deserialize;

use crate::python::{ensure_venv, scripts_dir, PythonError};

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub endpoint: String,
    pub region: String,
    pub stack_name: String,
    /// Logical id → physical id (queue URL for queues).
    pub resources: BTreeMap<String, String>,
    #[serde(default)]
    pub queue_arns: BTreeMap<String, String>,
    pub functions: BTreeMap<String, FunctionSpec>,
    /// The HTTP API's throttles, parameters resolved (none in a manifest that names none).
    #[serde(default)]
    pub http_throttle: HttpThrottle,
}

/// API Gateway's throttle of one route: a token bucket of `burst_limit` tokens, refilled at
/// `rate_limit` tokens a second (`ThrottlingRateLimit` / `ThrottlingBurstLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Throttle {
    pub rate_limit: f64,
    pub burst_limit: u32,
}

/// The HTTP API's `DefaultRouteSettings` and `RouteSettings` (by route key, `POST /events`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HttpThrottle {
    #[serde(default)]
    pub default: Option<Throttle>,
    #[serde(default)]
    pub routes: BTreeMap<String, Throttle>,
}

impl HttpThrottle {
    /// The throttle of a route: its own setting, else the API's default.
    pub fn for_route(&self, route: &HttpRoute) -> Option<Throttle> {
        self.routes.get(&route.key()).copied().or(self.default)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionSpec {
    pub binary: String,
    #[serde(default, deserialize_with = "environment")]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub http_routes: Vec<HttpRoute>,
    #[serde(default)]
    pub queues: Vec<QueueSource>,
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
}

/// Lambda's environment holds strings; moto keeps a number parameter (`!Ref ConfigCacheSeconds`)
/// as a number, so scalars are read as their text.
fn environment<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
}

impl HttpRoute {
    /// The route key API Gateway names the route by: `POST /events`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueSource {
    pub queue_logical_id: String,
    pub queue_url: String,
    pub batch_size: u32,
    #[serde(default)]
    pub report_batch_item_failures: bool,
    #[serde(default)]
    pub maximum_batching_window_seconds: u32,
    /// The mapping's `ScalingConfig.MaximumConcurrency`: most batches at once.
    #[serde(default)]
    pub maximum_concurrency: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleSpec {
    pub rule_name: String,
    pub expression: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error("provisioning template.yaml on {endpoint} failed: {reason}")]
    Failed { endpoint: String, reason: String },
}

impl Manifest {
    /// Provisions `template.yaml` as stack `stack_name` on the emulator at `endpoint`.
    /// `params` are template parameters (`Key=Value`). With `reuse`, a stack of that name that
    /// exists already (on an emulator that outlives `cargo dev`, e.g. LocalStack) is used as it is.
    pub fn provision(
        endpoint: &str,
        stack_name: &str,
        params: &[String],
        reuse: bool,
    ) -> Result<Self, ProvisionError> {
        let python = ensure_venv()?;
        let mut cmd = Command::new(python);
        cmd.arg(scripts_dir().join("provision.py")).args([
            "--endpoint",
            endpoint,
            "--stack-name",
            stack_name,
        ]);
        for p in params {
            cmd.args(["--param", p]);
        }
        if reuse {
            cmd.arg("--reuse");
        }
        let failed = |reason: String| ProvisionError::Failed {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let out = cmd.output().map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| failed(format!("unreadable manifest: {e}")))
    }

    pub fn resource(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id).map(String::as_str)
    }

    /// The function with this binary name (`capture-form`, ...).
    pub fn function_by_binary(&self, binary: &str) -> Option<(&str, &FunctionSpec)> {
        self.functions
            .iter()
            .find(|(_, f)| f.binary == binary)
            .map(|(id, f)| (id.as_str(), f))
    }

    /// Every HTTP route with the binary that serves it.
    pub fn routes(&self) -> Vec<(HttpRoute, String)> {
        let mut routes: Vec<_> = self
            .functions
            .values()
            .flat_map(|f| {
                f.http_routes
                    .iter()
                    .map(move |r| (r.clone(), f.binary.clone()))
            })
            .collect();
        routes.sort();
        routes
    }
}
