//! Where the emulator serves each AWS service.
//!
//! moto started by `infra/local/py/emulator.py` serves DynamoDB from a second process of its
//! own (one Python process per core instead of one for everything; docs/performance.md, "Load
//! bench") and says where at `GET <endpoint>/_leadflow/endpoints`. The main endpoint still
//! answers DynamoDB by passing requests on, so a client that knows only `AWS_ENDPOINT_URL`
//! works, only slower; the local stack's clients go to each service directly. Any other
//! endpoint (LocalStack, a proxy) answers that path with an error or not at all: then every
//! service uses the one endpoint, as before.

use std::collections::HashMap;
use std::time::Duration;

use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use serde::Deserialize;

/// An emulator's endpoints: the main one, and the services it serves elsewhere (by lower-case
/// service id, e.g. `dynamodb`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    main: String,
    by_service: HashMap<String, String>,
}

/// One entry of `/_leadflow/endpoints`.
#[derive(Debug, Deserialize)]
struct Served {
    url: String,
    pid: Option<u32>,
}

impl ServiceEndpoints {
    /// Every service on `main`.
    pub fn single(main: &str) -> Self {
        Self {
            main: main.trim_end_matches('/').to_owned(),
            by_service: HashMap::new(),
        }
    }

    /// Asks the emulator at `main` which services it serves elsewhere; an emulator that does
    /// not answer the question (LocalStack) serves everything on `main`.
    pub async fn discover(main: &str) -> Self {
        let mut endpoints = Self::single(main);
        endpoints.by_service = discover_served(&endpoints.main)
            .await
            .into_iter()
            .map(|(service, served)| (service, served.url))
            .collect();
        endpoints
    }

    pub fn main(&self) -> &str {
        &self.main
    }

    /// The endpoint of a service (by SDK service id, e.g. `DynamoDB`, `SQS`).
    pub fn of(&self, service_id: &str) -> &str {
        self.by_service
            .get(&service_id.to_ascii_lowercase())
            .map_or(&self.main, String::as_str)
    }

    /// The environment a process needs to reach every service the same way (for
    /// `cargo lambda watch` env files and child processes): `AWS_ENDPOINT_URL` and one
    /// `AWS_ENDPOINT_URL_<SERVICE>` per service served elsewhere.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![("AWS_ENDPOINT_URL".to_owned(), self.main.clone())];
        let mut services: Vec<_> = self.by_service.iter().collect();
        services.sort();
        vars.extend(services.into_iter().map(|(service, url)| {
            (
                format!("AWS_ENDPOINT_URL_{}", env_suffix(service)),
                url.clone(),
            )
        }));
        vars
    }
}

/// The pids of the emulator's other processes, for benches that read their CPU time (empty
/// unless the emulator is emulator.py's moto).
pub async fn helper_pids(main: &str) -> Vec<u32> {
    discover_served(main.trim_end_matches('/'))
        .await
        .into_values()
        .filter_map(|served| served.pid)
        .collect()
}

async fn discover_served(main: &str) -> HashMap<String, Served> {
    tokio::time::timeout(Duration::from_secs(2), fetch_endpoints(main))
        .await
        .ok()
        .flatten()
        .and_then(|body| serde_json::from_slice(&body).ok())
        .unwrap_or_default()
}

/// `GET /_leadflow/endpoints` in plain HTTP/1.0 (no HTTP client here: this runs before anything
/// sets up TLS, and only loopback emulators answer it). `None` unless answered 200.
async fn fetch_endpoints(main: &str) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let authority = main.strip_prefix("http://")?.split('/').next()?;
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let request = format!("GET /_leadflow/endpoints HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = answer[..split].split(|&b| b == b'\n').next()?;
    let ok = std::str::from_utf8(status).ok()?.split_whitespace().nth(1) == Some("200");
    ok.then(|| answer[split + 4..].to_vec())
}

/// The SDK's spelling of a service id in environment variable names (aws-config:
/// upper case, spaces and dashes as underscores).
fn env_suffix(service_id: &str) -> String {
    service_id.to_ascii_uppercase().replace([' ', '-'], "_")
}

/// Per-service endpoints for an `SdkConfig`: the user's own `AWS_ENDPOINT_URL_<SERVICE>` wins,
/// then what the emulator said, then the main endpoint. (An endpoint set on the config itself
/// would override all of these: the SDK gives a client-set `endpoint_url` precedence.)
impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.profile() != "endpoint_url" {
            return None;
        }
        let own = format!("{}_{}", key.env(), env_suffix(key.service_id()));
        std::env::var(own)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| Some(self.of(key.service_id()).to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> ServiceEndpoints {
        let mut e = ServiceEndpoints::single("http://127.0.0.1:4566/");
        e.by_service
            .insert("dynamodb".into(), "http://127.0.0.1:4567".into());
        e
    }

    #[test]
    fn a_service_served_elsewhere_gets_its_own_endpoint() {
        let e = split();
        assert_eq!(e.of("DynamoDB"), "http://127.0.0.1:4567");
        assert_eq!(e.of("SQS"), "http://127.0.0.1:4566");
        assert_eq!(e.main(), "http://127.0.0.1:4566");
    }

    #[test]
    fn env_vars_name_each_service_as_the_sdk_reads_them() {
        assert_eq!(
            split().env_vars(),
            vec![
                (
                    "AWS_ENDPOINT_URL".to_owned(),
                    "http://127.0.0.1:4566".to_owned()
                ),
                (
                    "AWS_ENDPOINT_URL_DYNAMODB".to_owned(),
                    "http://127.0.0.1:4567".to_owned()
                ),
            ]
        );
        assert_eq!(env_suffix("Secrets Manager"), "SECRETS_MANAGER");
    }

    #[test]
    fn the_sdk_config_hands_each_client_its_endpoint() {
        let e = split();
        let key = |service| {
            ServiceConfigKey::builder()
                .service_id(service)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .expect("a complete key")
        };
        assert_eq!(
            e.load_config(key("DynamoDB")).as_deref(),
            Some("http://127.0.0.1:4567")
        );
        assert_eq!(
            e.load_config(key("EventBridge")).as_deref(),
            Some("http://127.0.0.1:4566")
        );
    }
}
