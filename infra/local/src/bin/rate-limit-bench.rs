//! `rate-limit-bench`: what the per-client rate limit adds to a public request on the local
//! stack. Not a test: a measurement (docs/performance.md, "Per-client rate limits").
//!
//!     cargo run --release -p leadflow-local --bin rate-limit-bench -- --requests 200
//!
//! Starts its own moto (or uses `AWS_ENDPOINT_URL`) and provisions two stacks from
//! template.yaml: one with the limits off, one with limits no request reaches. Sends the same
//! requests to both, alternating, through the real capture-form handler as the local HTTP
//! server calls it (an API Gateway event from one client address), and prints p50/p99 of each.
//! Then times the bucket update alone, on each of its paths.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use leadflow_aws::dynamo::DynamoStore;
use leadflow_domain::ports::RateLimitStore;
use leadflow_domain::rate_limit::{ClientKey, RateLimit, Verdict};
use leadflow_local::functions::HttpHandler;
use leadflow_local::manifest::HttpRoute;
use leadflow_local::{Emulator, LocalStack};

const USAGE: &str = "usage: rate-limit-bench [--requests 200]";

fn parse_args() -> Result<usize, String> {
    let mut requests = 200;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--requests" => {
                requests = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--requests needs a positive number\n{USAGE}"))?
            }
            _ => return Err(USAGE.into()),
        }
    }
    Ok(requests)
}

#[tokio::main]
async fn main() -> ExitCode {
    let requests = match parse_args() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    leadflow_local::init_logs("warn");
    match run(requests).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

/// p50 and p99 in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

async fn stack(endpoint: &str, name: &str, limit: &str) -> Result<LocalStack, String> {
    let params: Vec<String> = ["LeadsRateLimit", "EventsRateLimit", "CrmCallbackRateLimit"]
        .iter()
        .map(|p| format!("{p}={limit}"))
        .collect();
    let name = format!(
        "rl-bench-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    LocalStack::provision(endpoint, &name, &params, false)
        .await
        .map_err(|e| e.to_string())
}

/// One request as the local HTTP server hands it to the function, from 203.0.113.10.
async fn call(handler: &HttpHandler, path: &str, body: String) -> Result<Duration, String> {
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("host", "127.0.0.1")
        .body(())
        .map_err(|e| e.to_string())?;
    let (parts, ()) = request.into_parts();
    let route = HttpRoute {
        method: "POST".into(),
        path: path.into(),
    };
    let peer: SocketAddr = "203.0.113.10:50000".parse().map_err(|e| format!("{e}"))?;
    let event = leadflow_local::http::api_gateway_v2_event(&parts, body.as_bytes(), &route, peer);
    let request = lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let response = handler(request).await;
    let took = started.elapsed();
    if !response.status().is_success() {
        return Err(format!("{path} answered {}", response.status()));
    }
    Ok(took)
}

async fn run(requests: usize) -> Result<(), Box<dyn std::error::Error>> {
    let emulator =
        tokio::task::spawn_blocking(|| Emulator::from_env_or_start("127.0.0.1", 0)).await??;
    let off = stack(emulator.endpoint(), "off", "off").await?;
    // Limits no request of the bench reaches: every request pays for its bucket update.
    let on = stack(emulator.endpoint(), "on", "1000/s burst 1000000").await?;
    let handler = |s: &LocalStack| {
        s.function("capture-form")
            .and_then(|f| f.http.clone())
            .ok_or("the template has no capture-form")
    };
    let (h_off, h_on) = (handler(&off)?, handler(&on)?);
    println!("rate-limit-bench: {requests} requests per route and variant, one client, sequential");

    for path in ["/leads", "/events"] {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for i in 0..requests {
            let body = |variant: &str| match path {
                "/leads" => format!(r#"{{"email":"bench-{variant}-{i}@example.com"}}"#),
                _ => format!(
                    r#"{{"events":[{{"event_id":"e-{variant}-{i}","type":"page_view","visitor_id":"v-bench","occurred_at":"{}"}}]}}"#,
                    chrono::Utc::now().to_rfc3339()
                ),
            };
            // Alternating, so both see the same emulator load.
            without.push(call(&h_off, path, body("off")).await?);
            with.push(call(&h_on, path, body("on")).await?);
        }
        let (p50_off, p99_off) = percentiles(&mut without);
        let (p50_on, p99_on) = percentiles(&mut with);
        println!(
            "  POST {path:<8} without limit p50 {p50_off:6.1} ms p99 {p99_off:6.1} ms | with limit p50 {p50_on:6.1} ms p99 {p99_on:6.1} ms | added p50 {:+.1} ms",
            p50_on - p50_off
        );
    }

    // The bucket update alone, on each path of the adapter.
    let table = on
        .manifest
        .resource("LeadsTable")
        .ok_or("the stack has no LeadsTable")?
        .to_owned();
    let store = DynamoStore::new(leadflow_aws::aws_sdk_dynamodb::Client::new(&on.sdk), table);
    let paths = [
        // A bucket that is full by the next request: one UpdateItem.
        ("full bucket (1 write)", "1000/s burst 1000000", true),
        // A bucket never full again within the run: the first write's condition fails, the
        // second is a compare-and-set.
        ("partly spent (2 writes)", "1/h burst 1000000", true),
        // Spent: the failed condition returns the bucket, nothing is written.
        ("refused (1 failed write)", "1/h burst 1", false),
    ];
    for (label, spec, admit) in paths {
        let limit = RateLimit::parse(spec)?.ok_or("a limit")?;
        let key = ClientKey::new(b"bench", label, "203.0.113.10", None);
        // The refused path starts from a spent bucket.
        if !admit {
            store.take_token(&key, &limit, chrono::Utc::now()).await?;
        }
        let mut samples = Vec::new();
        for _ in 0..requests {
            let started = Instant::now();
            let verdict = store.take_token(&key, &limit, chrono::Utc::now()).await?;
            samples.push(started.elapsed());
            if matches!(verdict, Verdict::Admit(_)) != admit {
                return Err(format!("{label}: unexpected {verdict:?}").into());
            }
        }
        let (p50, p99) = percentiles(&mut samples);
        println!("  take_token {label:<26} p50 {p50:6.1} ms p99 {p99:6.1} ms");
    }
    Ok(())
}
