//! The HTTP side of API Gateway (HTTP API, payload format 2.0): each request becomes the JSON
//! event Lambda would receive, parsed by lambda_http exactly as in Lambda, and handed to the
//! function that template.yaml routes it to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use serde_json::json;
use tokio::net::TcpListener;

use crate::functions::HttpHandler;
use crate::manifest::HttpRoute;

/// API Gateway's own limit on a request payload is 10 MB; the functions set tighter ones.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

#[derive(Clone)]
pub struct Router {
    routes: Arc<Vec<(HttpRoute, HttpHandler)>>,
}

fn json_response(status: u16, body: serde_json::Value) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

impl Router {
    pub fn new(routes: Vec<(HttpRoute, HttpHandler)>) -> Self {
        Self {
            routes: Arc::new(routes),
        }
    }

    fn find(&self, method: &str, path: &str) -> Option<(&HttpRoute, &HttpHandler)> {
        self.routes
            .iter()
            .find(|(r, _)| {
                (r.method.eq_ignore_ascii_case(method) || r.method.eq_ignore_ascii_case("ANY"))
                    && path_matches(&r.path, path)
            })
            .map(|(r, h)| (r, h))
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let router = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let router = router.clone();
                    async move { Ok::<_, Infallible>(router.dispatch(req, peer).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn dispatch(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Some((route, handler)) = self.find(parts.method.as_str(), parts.uri.path()) else {
            return json_response(404, json!({ "message": "Not Found" }));
        };
        let body = match http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return json_response(413, json!({ "message": "Request Entity Too Large" })),
        };
        let event = api_gateway_v2_event(&parts, &body, route, peer);
        let request = match lambda_http::request::from_str(&event.to_string()) {
            Ok(r) => r,
            Err(e) => {
                return json_response(500, json!({ "message": format!("local gateway: {e}") }))
            }
        };
        let response = handler(request).await;
        let (parts, body) = response.into_parts();
        let bytes = match body {
            Body::Empty => Bytes::new(),
            Body::Text(t) => Bytes::from(t),
            Body::Binary(b) => Bytes::from(b),
            _ => Bytes::new(),
        };
        hyper::Response::from_parts(parts, Full::new(bytes))
    }
}

/// Whether a request path fits a route path such as `/leads/{id}/qualification`.
pub fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// The event API Gateway sends a Lambda for an HTTP API route (payload format 2.0).
pub fn api_gateway_v2_event(
    parts: &http::request::Parts,
    body: &[u8],
    route: &HttpRoute,
    peer: SocketAddr,
) -> serde_json::Value {
    use base64::Engine;
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        let entry = headers
            .entry(name.as_str().to_owned())
            .or_insert_with(|| json!(""));
        let joined = match entry.as_str() {
            Some("") | None => value,
            Some(prev) => format!("{prev},{value}"),
        };
        *entry = json!(joined);
    }
    let now = chrono::Utc::now();
    let route_key = format!("{} {}", route.method, route.path);
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "cookies": cookies,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true,
    })
}
