//! `load-bench`: how many sales-ready leads the local stack takes in, and how fast they reach
//! the CRM. Not a test: a measurement (docs/performance.md, "Load bench").
//!
//!     cargo run --release -p leadflow-local --bin load-bench -- --leads 100 --clients 16
//!
//! Starts its own moto (or uses `AWS_ENDPOINT_URL`), provisions a fresh stack from
//! template.yaml and runs it as `cargo dev` does (HTTP routes, queue pollers, schedules), with
//! the per-client rate limits and API throttles raised as the tests raise them. Runs a stand-in
//! CRM on a free loopback port that checks each delivery's Standard Webhooks signature and
//! records when each lead first arrived, and pushes config/leadflow.yaml with `routing.crm`
//! pointing at it. Then `--clients` concurrent clients (each from its own loopback address on
//! Linux) post `--leads` leads: a form that qualifies, then 4 tracked events with the
//! visitor token of the capture answer, one `POST /events` each; the last event makes the lead
//! MQL. `--rate` paces the starts of leads across all clients (leads/s); without it every client
//! posts its next lead as soon as the last is taken in. Prints the intake rate, the latency of
//! `POST /leads`, capture → CRM delivery, and how many leads arrived. Exits non-zero unless every
//! lead reached the CRM within `--timeout` seconds after the last one was taken in.
//!
//! The handlers run in this process, so the profile this is built with (`--release` or not) is
//! the handlers' profile.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leadflow_domain::webhook::{self, WebhookSecret};
use leadflow_local::cpu::cpu_seconds;
use leadflow_local::stack::WEBHOOK_SECRET_PARAM;
use leadflow_local::{Emulator, LocalStack};
use serde_json::{json, Value};

const USAGE: &str =
    "usage: load-bench [--leads 100] [--clients 16] [--rate LEADS_PER_S] [--timeout 300]";

/// The limits of the template are for visitors; the bench is many visitors at once. These are
/// the tests' values (tests/pipeline/support.rs): high enough that nothing is refused, while
/// every request still pays for its token bucket.
const RAISED_LIMITS: [&str; 7] = [
    "LeadsRateLimit=1000/s burst 1000",
    "EventsRateLimit=1000/s burst 1000",
    "CrmCallbackRateLimit=1000/s burst 1000",
    "ThrottleRateLimit=10000",
    "ThrottleBurstLimit=5000",
    "EventsThrottleRateLimit=10000",
    "EventsThrottleBurstLimit=5000",
];

/// The CRM endpoint of config/leadflow.yaml, replaced by the stand-in's.
const EXAMPLE_CRM: &str = "http://127.0.0.1:9000/hooks/leadflow";

/// `POST /events` requests per lead.
const EVENTS_PER_LEAD: usize = 4;

struct Args {
    leads: usize,
    clients: usize,
    rate: Option<f64>,
    timeout: Duration,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        leads: 100,
        clients: 16,
        rate: None,
        timeout: Duration::from_secs(300),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<f64, String> {
            let v = it
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| format!("{name}: {v:?} is not a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--leads" => parsed.leads = value("--leads")? as usize,
            "--clients" => parsed.clients = value("--clients")? as usize,
            "--rate" => parsed.rate = Some(value("--rate")?),
            "--timeout" => parsed.timeout = Duration::from_secs_f64(value("--timeout")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if parsed.leads == 0 || parsed.clients == 0 {
        return Err(format!("--leads and --clients must be at least 1\n{USAGE}"));
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // The pollers log every batch at info; failures (warnings) still show.
    leadflow_local::init_logs("warn");
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pure parts: percentiles, the figures and their report.

/// The nearest-rank percentile (`p` in 0..=1) of sorted samples: the smallest sample with at
/// least `p` of all samples at or below it.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and the largest of some latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Spread {
    fn of(mut samples: Vec<Duration>) -> Option<Self> {
        samples.sort();
        Some(Self {
            p50: percentile(&samples, 0.50)?,
            p99: percentile(&samples, 0.99)?,
            max: *samples.last()?,
        })
    }
}

/// Milliseconds below 10 s, seconds from there: what a reader compares.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.1} s")
    }
}

fn spread_line(label: &str, spread: Option<Spread>) -> String {
    match spread {
        Some(s) => format!(
            "  {label:<18} p50 {:>8}  p99 {:>8}  max {:>8}",
            human(s.p50),
            human(s.p99),
            human(s.max)
        ),
        None => format!("  {label:<18} no samples"),
    }
}

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    leads: usize,
    /// Leads whose form and every event were accepted.
    taken_in: usize,
    /// From the first request to the last answer of the last lead taken in.
    intake_wall: Duration,
    /// Requests answered 2xx.
    requests: usize,
    failed_requests: usize,
    /// One failure, for the reader to start from.
    first_failure: Option<String>,
    capture: Vec<Duration>,
    events: Vec<Duration>,
    /// From sending the lead's `POST /leads` to its first signed delivery at the CRM.
    capture_to_crm: Vec<Duration>,
    /// From the answer to the lead's last event to that delivery.
    last_event_to_crm: Vec<Duration>,
    delivered: usize,
    /// Later attempts with a webhook-id the CRM already had (retries).
    repeated_attempts: usize,
    /// Deliveries of a lead that had arrived under another webhook-id.
    delivered_again_new_id: usize,
    rejected_signatures: usize,
    /// From the first request to the last lead's first delivery.
    last_delivery_after: Option<Duration>,
    /// CPU seconds of the emulator and of this process (clients, handlers, CRM) during the run.
    cpu: Option<(f64, f64)>,
    /// Wall time the CPU figures cover.
    cpu_wall: Duration,
}

impl Figures {
    /// Every lead taken in and delivered exactly once, nothing refused.
    fn ok(&self) -> bool {
        self.taken_in == self.leads
            && self.delivered == self.leads
            && self.delivered_again_new_id == 0
            && self.rejected_signatures == 0
    }

    fn report(&self) -> String {
        let mut out = String::new();
        let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "  intake             {} of {} leads taken in within {:.1} s: {:.1} leads/s ({:.1} requests/s, {} failed)",
            self.taken_in,
            self.leads,
            self.intake_wall.as_secs_f64(),
            per_s(self.taken_in, self.intake_wall),
            per_s(self.requests, self.intake_wall),
            self.failed_requests
        );
        if let Some(f) = &self.first_failure {
            let _ = writeln!(out, "  first failure      {f}");
        }
        let _ = writeln!(
            out,
            "{}",
            spread_line("capture", Spread::of(self.capture.clone()))
        );
        let _ = writeln!(
            out,
            "{}",
            spread_line("tracked event", Spread::of(self.events.clone()))
        );
        let _ = writeln!(
            out,
            "{}",
            spread_line("capture -> CRM", Spread::of(self.capture_to_crm.clone()))
        );
        let _ = writeln!(
            out,
            "{}",
            spread_line(
                "last event -> CRM",
                Spread::of(self.last_event_to_crm.clone())
            )
        );
        let _ = writeln!(
            out,
            "  delivered          {} of {} leads ({} repeated attempts, {} leads again under a new webhook-id, {} bad signatures)",
            self.delivered,
            self.leads,
            self.repeated_attempts,
            self.delivered_again_new_id,
            self.rejected_signatures
        );
        if let Some(last) = self.last_delivery_after {
            let _ = writeln!(
                out,
                "  end to end         last lead delivered {:.1} s after the first request: {:.1} leads/s",
                last.as_secs_f64(),
                per_s(self.delivered, last)
            );
        }
        if let Some((emulator, bench)) = self.cpu {
            let share = |s: f64| 100.0 * s / self.cpu_wall.as_secs_f64().max(1e-9);
            let _ = writeln!(
                out,
                "  cpu                over {:.1} s: emulator {emulator:.1} s ({:.0}% of one core), load-bench with the handlers {bench:.1} s ({:.0}%)",
                self.cpu_wall.as_secs_f64(),
                share(emulator),
                share(bench)
            );
        }
        out
    }
}

/// Where the run happened: what docs/performance.md records with the figures.
struct Machine {
    cores: usize,
    cpu_model: String,
    profile: &'static str,
}

impl Machine {
    fn here() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| cpu_model(&s))
            .unwrap_or_else(|| "unknown CPU".into());
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

// ---------------------------------------------------------------------------------------------
// The stand-in CRM.

#[derive(Default)]
struct Arrivals {
    /// By the lead's e-mail: when it first arrived, and under which webhook-id.
    first: HashMap<String, (Instant, String)>,
    repeated_attempts: usize,
    again_new_id: usize,
    rejected: usize,
}

type Shared = Arc<Mutex<Arrivals>>;

/// Records one delivery; answers its status.
fn receive(
    arrivals: &Shared,
    secret: &WebhookSecret,
    headers: &http::HeaderMap,
    body: &[u8],
    at: Instant,
) -> u16 {
    let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = webhook::signed_headers(header, Utc::now())
        .ok()
        .filter(|h| secret.matches(h.id, h.timestamp, body, h.signatures));
    let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let Some(signed) = signed else {
        a.rejected += 1;
        return 401;
    };
    let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Only routed leads count; SLA notices may come too.
    if payload["type"] != "lead.routed" {
        return 200;
    }
    let Some(email) = payload["data"]["contact"]["email"].as_str() else {
        return 200;
    };
    match a.first.get(email) {
        None => {
            a.first.insert(email.to_owned(), (at, signed.id.to_owned()));
        }
        Some((_, id)) if id == signed.id => a.repeated_attempts += 1,
        Some(_) => a.again_new_id += 1,
    }
    200
}

/// Serves the stand-in CRM on a free loopback port; gives its URL.
async fn start_crm(
    secret: WebhookSecret,
    arrivals: Shared,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let secret = Arc::new(secret);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (arrivals, secret) = (arrivals.clone(), secret.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (arrivals, secret) = (arrivals.clone(), secret.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status =
                            receive(&arrivals, &secret, &parts.headers, &body, Instant::now());
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                        *resp.status_mut() =
                            hyper::StatusCode::from_u16(status).unwrap_or_default();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}/crm/leads"), server))
}

// ---------------------------------------------------------------------------------------------
// The clients.

/// What one lead's requests took.
struct Posted {
    email: String,
    capture_sent: Instant,
    capture: Duration,
    events: Vec<Duration>,
    taken_in: Instant,
}

struct Failed {
    requests_ok: usize,
    reason: String,
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {answer}"));
    }
    Ok(answer)
}

/// The form: fit 35 (dach 10, target-industry 10, target-company-size 15), grade B.
fn form(email: &str) -> Value {
    json!({
        "email": email, "first_name": "Lea", "company": "Beispiel GmbH",
        "job_title": "Marketing Manager", "country": "DE", "industry": "software",
        "company_size": "51-200"
    })
}

/// The 4 tracked events, in the order sent. Only with the last (pricing, 25 points for crm
/// leads, whose MQL threshold is 50) is the lead MQL: 35 + 1 + 4 + 5 = 45 before, 71 after.
fn tracked_events(token: &str) -> [Value; EVENTS_PER_LEAD] {
    let at = |s: i64| (Utc::now() - chrono::Duration::seconds(s)).to_rfc3339();
    let event = |kind: &str, url: &str, tags: &[&str], ago: i64| {
        json!({"events": [{
            "event_id": uuid::Uuid::new_v4().to_string(), "type": kind, "occurred_at": at(ago),
            "url": url, "tags": tags, "visitor_token": token
        }]})
    };
    [
        event(
            "page_view",
            "https://www.example.com/blog/lead-scoring",
            &[],
            4,
        ),
        event(
            "page_view",
            "https://www.example.com/products/crm",
            &["crm"],
            3,
        ),
        event(
            "email_clicked",
            "https://www.example.com/newsletter/crm",
            &[],
            2,
        ),
        event("page_view", "https://www.example.com/pricing", &[], 1),
    ]
}

async fn post_lead(client: &reqwest::Client, api: &str, email: String) -> Result<Posted, Failed> {
    let capture_sent = Instant::now();
    let answer = post(client, &format!("{api}/leads"), &form(&email))
        .await
        .map_err(|reason| Failed {
            requests_ok: 0,
            reason,
        })?;
    let capture = capture_sent.elapsed();
    let token = answer["visitor_token"].as_str().ok_or_else(|| Failed {
        requests_ok: 1,
        reason: "the capture answer has no visitor_token".into(),
    })?;
    let mut events = Vec::with_capacity(EVENTS_PER_LEAD);
    for (i, body) in tracked_events(token).iter().enumerate() {
        let sent = Instant::now();
        let answer = post(client, &format!("{api}/events"), body)
            .await
            .map_err(|reason| Failed {
                requests_ok: 1 + i,
                reason,
            })?;
        events.push(sent.elapsed());
        if answer["accepted"] != 1 {
            return Err(Failed {
                requests_ok: 1 + i,
                reason: format!("an event was not accepted: {answer}"),
            });
        }
    }
    Ok(Posted {
        email,
        capture_sent,
        capture,
        events,
        taken_in: Instant::now(),
    })
}

/// A client's own source address: 127.0.0.2, 127.0.0.3, ... (Linux routes all of 127/8 to
/// loopback), so each has its own rate-limit buckets as distinct visitors would.
fn client_address(client: usize) -> IpAddr {
    if cfg!(target_os = "linux") {
        let n = client + 2;
        IpAddr::V4(Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250 + 1) as u8))
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

// ---------------------------------------------------------------------------------------------

async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let machine = Machine::here();
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "load-bench {}: {} sales-ready leads from {} clients, {}",
        command.join(" "),
        args.leads,
        args.clients,
        match args.rate {
            Some(r) => format!("started at {r} leads/s"),
            None => "each client as fast as it is answered".into(),
        }
    );
    println!(
        "  machine   {} cores, {}; {} build (the handlers run in this process)",
        machine.cores, machine.cpu_model, machine.profile
    );
    println!("  date      {}", Utc::now().format("%Y-%m-%d %H:%M UTC"));
    // The machine may be shared: what else ran shows in the load average.
    println!(
        "  load      {} (1, 5, 15 min) before the run",
        load_average()
    );

    // A fresh stack with a signing secret of its own.
    let started = Instant::now();
    let emulator =
        tokio::task::spawn_blocking(|| Emulator::from_env_or_start("127.0.0.1", 0)).await??;
    let emulator_pid = emulator.pid().map(|p| p.to_string());
    let secret_value = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(
            [
                uuid::Uuid::new_v4().into_bytes(),
                uuid::Uuid::new_v4().into_bytes()
            ]
            .concat()
        )
    );
    let secret = WebhookSecret::parse(&secret_value)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let stack_name = format!("load-bench-{run_id}");
    let params: Vec<String> = RAISED_LIMITS
        .iter()
        .map(|p| p.to_string())
        .chain([format!("{WEBHOOK_SECRET_PARAM}={secret_value}")])
        .collect();
    let mut stack = LocalStack::provision(emulator.endpoint(), &stack_name, &params, false).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    stack.override_env("PUBLIC_API_URL", &api)?;

    // The stand-in CRM, and the example configuration sending every lead to it.
    let arrivals: Shared = Arc::default();
    let (crm_url, crm_server) = start_crm(secret, arrivals.clone()).await?;
    let example = std::fs::read_to_string(leadflow_local::config::example_path())?;
    if !example.contains(EXAMPLE_CRM) {
        return Err(format!("config/leadflow.yaml no longer sends to {EXAMPLE_CRM}").into());
    }
    let config = leadflow_local::config::push(
        &stack,
        &example.replace(EXAMPLE_CRM, &crm_url),
        Some("load-bench: routing.crm is the bench's receiver"),
    )
    .await
    .map_err(|e| format!("config: {e}"))?;

    // The stack as `cargo dev` runs it.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(stack.router().serve(listener));
    for p in stack.pollers() {
        tasks.spawn(p.run());
    }
    for s in stack.schedules() {
        if let Some(every) = s.every {
            tasks.spawn(leadflow_local::schedule::run(
                s.rule_name,
                every,
                s.function,
                s.handler,
            ));
        }
    }
    println!(
        "  emulator  {} ({}{})",
        emulator.endpoint(),
        if emulator.is_owned() {
            "moto, started here"
        } else {
            "from AWS_ENDPOINT_URL"
        },
        emulator_pid
            .as_deref()
            .map(|p| format!(", pid {p}"))
            .unwrap_or_default()
    );
    println!(
        "  stack     {stack_name} at {api}, config version {} (config/leadflow.yaml, routing.crm: the receiver)",
        config.version
    );
    println!("  crm       {crm_url}, signatures checked (Standard Webhooks)");
    println!(
        "  per lead  POST /leads, then {EVENTS_PER_LEAD} x POST /events (one event each, by visitor_token)"
    );
    println!(
        "  ready in  {:.1} s (emulator, provisioning, config)",
        started.elapsed().as_secs_f64()
    );

    // The clients.
    let cpu_before = (
        emulator_pid.as_deref().and_then(cpu_seconds),
        cpu_seconds("self"),
    );
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..args.clients.min(args.leads) {
        let client = reqwest::Client::builder()
            .local_address(client_address(c))
            .timeout(Duration::from_secs(60))
            .build()?;
        let (next, api, run_id) = (next.clone(), api.clone(), run_id.clone());
        let (leads, rate) = (args.leads, args.rate);
        clients.spawn(async move {
            let mut done: Vec<Result<Posted, Failed>> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= leads {
                    return done;
                }
                if let Some(rate) = rate {
                    tokio::time::sleep_until(
                        (t0 + Duration::from_secs_f64(i as f64 / rate)).into(),
                    )
                    .await;
                }
                let email = format!("load-{run_id}-{i:06}@example.de");
                done.push(post_lead(&client, &api, email).await);
            }
        });
    }
    let mut posted = Vec::new();
    let mut figures = Figures {
        leads: args.leads,
        ..Default::default()
    };
    while let Some(done) = clients.join_next().await {
        for result in done? {
            match result {
                Ok(p) => {
                    figures.requests += 1 + EVENTS_PER_LEAD;
                    posted.push(p);
                }
                Err(f) => {
                    figures.requests += f.requests_ok;
                    figures.failed_requests += 1;
                    figures.first_failure.get_or_insert(f.reason);
                }
            }
        }
    }
    figures.taken_in = posted.len();
    figures.intake_wall = posted
        .iter()
        .map(|p| p.taken_in)
        .max()
        .map_or(Duration::ZERO, |last| last - t0);
    println!(
        "taken in: {} of {} leads in {:.1} s; waiting for the CRM (at most {} s)",
        figures.taken_in,
        args.leads,
        figures.intake_wall.as_secs_f64(),
        args.timeout.as_secs()
    );

    // Every lead taken in must reach the CRM.
    let deadline = Instant::now() + args.timeout;
    let mut last_note = Instant::now();
    loop {
        let arrived = arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first
            .len();
        if arrived >= figures.taken_in || Instant::now() >= deadline {
            break;
        }
        if last_note.elapsed() >= Duration::from_secs(10) {
            println!(
                "  {:>6.1} s: {arrived} of {} delivered",
                t0.elapsed().as_secs_f64(),
                figures.taken_in
            );
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    figures.cpu_wall = t0.elapsed();
    figures.cpu = match (
        cpu_before,
        (
            emulator_pid.as_deref().and_then(cpu_seconds),
            cpu_seconds("self"),
        ),
    ) {
        ((Some(e0), Some(b0)), (Some(e1), Some(b1))) => Some((e1 - e0, b1 - b0)),
        _ => None,
    };
    // Late repeats still count, so the receiver keeps running until the figures are taken.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arrivals = std::mem::take(&mut *arrivals.lock().unwrap_or_else(|e| e.into_inner()));
    for p in &posted {
        figures.capture.push(p.capture);
        figures.events.extend(&p.events);
        if let Some((at, _)) = arrivals.first.get(&p.email) {
            figures.capture_to_crm.push(*at - p.capture_sent);
            figures
                .last_event_to_crm
                .push(at.saturating_duration_since(p.taken_in));
        }
    }
    figures.delivered = posted
        .iter()
        .filter(|p| arrivals.first.contains_key(&p.email))
        .count();
    figures.repeated_attempts = arrivals.repeated_attempts;
    figures.delivered_again_new_id = arrivals.again_new_id;
    figures.rejected_signatures = arrivals.rejected;
    figures.last_delivery_after = arrivals.first.values().map(|(at, _)| *at - t0).max();

    println!("results (load average {} at the end)", load_average());
    print!("{}", figures.report());
    let ok = figures.ok();
    if ok {
        println!("OK: every lead reached the CRM, once, signed");
    } else {
        println!(
            "FAIL: {} of {} leads taken in, {} delivered within {} s of the last intake",
            figures.taken_in,
            args.leads,
            figures.delivered,
            args.timeout.as_secs()
        );
    }
    tasks.shutdown().await;
    crm_server.abort();
    drop(emulator);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 0.50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&hundred, 0.99), Some(Duration::from_millis(99)));
        // Few samples: p99 is the largest, p50 the lower middle.
        let four = ms(&[10, 20, 30, 40]);
        assert_eq!(percentile(&four, 0.50), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&four, 0.99), Some(Duration::from_millis(40)));
        assert_eq!(percentile(&ms(&[7]), 0.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_spread_sorts_its_samples_first() {
        let s = Spread::of(ms(&[300, 100, 200])).unwrap();
        assert_eq!(s.p50, Duration::from_millis(200));
        assert_eq!(s.p99, Duration::from_millis(300));
        assert_eq!(s.max, Duration::from_millis(300));
        assert_eq!(Spread::of(vec![]), None);
    }

    #[test]
    fn durations_read_in_ms_then_seconds() {
        assert_eq!(human(Duration::from_micros(1_400)), "1 ms");
        assert_eq!(human(Duration::from_millis(9_999)), "9999 ms");
        assert_eq!(human(Duration::from_millis(55_040)), "55.0 s");
    }

    fn figures() -> Figures {
        Figures {
            leads: 4,
            taken_in: 4,
            intake_wall: Duration::from_secs(2),
            requests: 20,
            capture: ms(&[100, 200, 300, 400]),
            events: ms(&[50; 16]),
            capture_to_crm: ms(&[1_000, 2_000, 3_000, 12_000]),
            last_event_to_crm: ms(&[500, 600, 700, 800]),
            delivered: 4,
            repeated_attempts: 1,
            last_delivery_after: Some(Duration::from_secs(8)),
            cpu: Some((4.0, 1.0)),
            cpu_wall: Duration::from_secs(8),
            ..Default::default()
        }
    }

    #[test]
    fn the_report_gives_rates_percentiles_and_deliveries() {
        let report = figures().report();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "  intake             4 of 4 leads taken in within 2.0 s: 2.0 leads/s (10.0 requests/s, 0 failed)"
        );
        assert_eq!(
            lines[1],
            "  capture            p50   200 ms  p99   400 ms  max   400 ms"
        );
        assert_eq!(
            lines[3],
            "  capture -> CRM     p50  2000 ms  p99   12.0 s  max   12.0 s"
        );
        assert!(lines[5].starts_with("  delivered          4 of 4 leads (1 repeated attempts,"));
        assert_eq!(
            lines[6],
            "  end to end         last lead delivered 8.0 s after the first request: 0.5 leads/s"
        );
        assert!(lines[7].contains("emulator 4.0 s (50% of one core)"));
        assert!(lines[7].contains("load-bench with the handlers 1.0 s (12%)"));
    }

    #[test]
    fn a_run_fails_unless_every_lead_arrived_once_and_signed() {
        assert!(figures().ok());
        let missing = Figures {
            delivered: 3,
            ..figures()
        };
        assert!(!missing.ok());
        let refused = Figures {
            taken_in: 3,
            failed_requests: 1,
            first_failure: Some("http://127.0.0.1/leads answered 429".into()),
            ..figures()
        };
        assert!(!refused.ok());
        assert!(refused.report().contains("first failure      http://"));
        assert!(!Figures {
            delivered_again_new_id: 1,
            ..figures()
        }
        .ok());
        assert!(!Figures {
            rejected_signatures: 1,
            ..figures()
        }
        .ok());
    }

    #[test]
    fn the_cpu_model_is_read_from_cpuinfo() {
        let cpuinfo =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn arguments() {
        let a = parse_args(
            ["--leads", "200", "--clients", "8", "--rate", "25"]
                .iter()
                .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!((a.leads, a.clients, a.rate), (200, 8, Some(25.0)));
        assert!(parse_args(["--leads".to_string(), "0".into()]).is_err());
        assert!(parse_args(["--rate".to_string(), "-1".into()]).is_err());
        assert!(parse_args(["--bogus".to_string()]).is_err());
    }

    #[test]
    fn the_crm_counts_signed_routed_leads_once_and_refuses_bad_signatures() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let arrivals: Shared = Arc::default();
        let body = br#"{"type":"lead.routed","data":{"contact":{"email":"a@example.de"}}}"#;
        let signed = |id: &str, sig: Option<String>| {
            let ts = Utc::now().timestamp();
            let mut h = http::HeaderMap::new();
            h.insert("webhook-id", id.parse().unwrap());
            h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
            let sig = sig.unwrap_or_else(|| secret.sign(id, ts, body));
            h.insert("webhook-signature", sig.parse().unwrap());
            h
        };
        let now = Instant::now();
        assert_eq!(
            receive(&arrivals, &secret, &signed("msg_1", None), body, now),
            200
        );
        assert_eq!(
            receive(&arrivals, &secret, &signed("msg_1", None), body, now),
            200
        );
        assert_eq!(
            receive(&arrivals, &secret, &signed("msg_2", None), body, now),
            200
        );
        let forged = Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string());
        assert_eq!(
            receive(&arrivals, &secret, &signed("msg_3", forged), body, now),
            401
        );
        let a = arrivals.lock().unwrap();
        assert_eq!(a.first.len(), 1);
        assert_eq!(a.first["a@example.de"].1, "msg_1");
        assert_eq!((a.repeated_attempts, a.again_new_id, a.rejected), (1, 1, 1));
    }
}
