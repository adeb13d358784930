//! The HTTP side of API Gateway (HTTP API, payload format 2.0): each request becomes the JSON
//! event Lambda would receive, parsed by lambda_http exactly as in Lambda, and handed to the
//! function that template.yaml routes it to, unless the route's throttle refuses it first.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
use crate::manifest::{HttpRoute, HttpThrottle, Throttle};

/// API Gateway's own limit on a request payload is 10 MB; the functions set tighter ones.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

#[derive(Clone)]
pub struct Router {
    routes: Arc<Vec<(HttpRoute, HttpHandler, Option<TokenBucket>)>>,
}

/// API Gateway's throttle of one route: a bucket of `burst_limit` tokens, full at first,
/// refilled at `rate_limit` tokens a second; a request takes one or is refused. A few lines
/// under a Mutex rather than a crate such as governor: they state API Gateway's semantics as
/// its documentation does, with no dependency, and the lock is held for a few additions.
#[derive(Clone)]
pub struct TokenBucket {
    throttle: Throttle,
    state: Arc<Mutex<(f64, Instant)>>,
}

impl TokenBucket {
    pub fn new(throttle: Throttle, now: Instant) -> Self {
        Self {
            throttle,
            state: Arc::new(Mutex::new((f64::from(throttle.burst_limit), now))),
        }
    }

    /// Takes a token at `now`, if the bucket holds one.
    pub fn try_take(&self, now: Instant) -> bool {
        // A poisoned lock only means another request panicked mid-update: the numbers stay valid.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        let refill = elapsed * self.throttle.rate_limit.max(0.0);
        *tokens = (*tokens + refill).min(f64::from(self.throttle.burst_limit));
        *last = (*last).max(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
    /// The routes, each with a bucket of its throttle (`throttle`, as template.yaml provisions it).
    pub fn new(routes: Vec<(HttpRoute, HttpHandler)>, throttle: &HttpThrottle) -> Self {
        let now = Instant::now();
        let routes = routes
            .into_iter()
            .map(|(r, h)| {
                let bucket = throttle.for_route(&r).map(|t| TokenBucket::new(t, now));
                (r, h, bucket)
            })
            .collect();
        Self {
            routes: Arc::new(routes),
        }
    }

    fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Option<&(HttpRoute, HttpHandler, Option<TokenBucket>)> {
        self.routes.iter().find(|(r, _, _)| {
            (r.method.eq_ignore_ascii_case(method) || r.method.eq_ignore_ascii_case("ANY"))
                && path_matches(&r.path, path)
        })
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
        let Some((route, handler, bucket)) = self.find(parts.method.as_str(), parts.uri.path())
        else {
            return json_response(404, json!({ "message": "Not Found" }));
        };
        // As API Gateway: a throttled request never reaches the function, and gets its body.
        if bucket.as_ref().is_some_and(|b| !b.try_take(Instant::now())) {
            return json_response(429, json!({ "message": "Too Many Requests" }));
        }
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
    let route_key = route.key();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bucket(rate_limit: f64, burst_limit: u32, now: Instant) -> TokenBucket {
        TokenBucket::new(
            Throttle {
                rate_limit,
                burst_limit,
            },
            now,
        )
    }

    fn taken(b: &TokenBucket, at: Instant, tries: usize) -> usize {
        (0..tries).filter(|_| b.try_take(at)).count()
    }

    #[test]
    fn a_full_bucket_admits_its_burst_at_once_then_refuses() {
        let t0 = Instant::now();
        let b = bucket(1.0, 2, t0);
        assert_eq!(taken(&b, t0, 5), 2);
    }

    #[test]
    fn the_bucket_refills_at_its_rate_and_never_beyond_its_burst() {
        let t0 = Instant::now();
        let b = bucket(2.0, 3, t0);
        assert_eq!(taken(&b, t0, 3), 3);
        // Half a second at 2 a second: one token.
        assert_eq!(taken(&b, t0 + Duration::from_millis(500), 5), 1);
        assert!(!b.try_take(t0 + Duration::from_millis(700)));
        // A long idle time fills the bucket to its burst, no more.
        assert_eq!(taken(&b, t0 + Duration::from_secs(60), 10), 3);
    }

    #[test]
    fn a_fractional_rate_refills_one_token_per_period() {
        let t0 = Instant::now();
        let b = bucket(0.5, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(1_900)));
        assert!(b.try_take(t0 + Duration::from_millis(2_000)));
    }

    #[test]
    fn clones_share_one_bucket() {
        let t0 = Instant::now();
        let b = bucket(1.0, 1, t0);
        let other = b.clone();
        assert!(b.try_take(t0));
        assert!(!other.try_take(t0));
    }

    #[test]
    fn a_route_has_its_own_throttle_or_the_default() {
        let throttle: HttpThrottle = serde_json::from_value(json!({
            "default": {"rate_limit": 50.0, "burst_limit": 100},
            "routes": {"POST /events": {"rate_limit": 1.0, "burst_limit": 2}}
        }))
        .expect("throttle settings");
        let route = |method: &str, path: &str| HttpRoute {
            method: method.to_owned(),
            path: path.to_owned(),
        };
        let events = throttle.for_route(&route("POST", "/events")).unwrap();
        assert_eq!((events.rate_limit, events.burst_limit), (1.0, 2));
        let leads = throttle.for_route(&route("POST", "/leads")).unwrap();
        assert_eq!((leads.rate_limit, leads.burst_limit), (50.0, 100));
        assert_eq!(
            HttpThrottle::default().for_route(&route("POST", "/leads")),
            None
        );
    }
}
