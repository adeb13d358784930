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
//! With faults, the same run is the soak (docs/performance.md, "Soak with faults"):
//! `--duplicate-deliveries` has every queue poller deliver every message twice (redelivered
//! after a success, or handed to two invocations at once, by turns), `--crm-fail-first PCT`
//! has the CRM answer 500 to the first attempt of PCT % of webhook-ids, and `--poison N`
//! puts N malformed messages onto the internal queues among the leads. Then, once the queues
//! are empty and the poison is on the DLQs, every lead is checked in the table and at the
//! CRM: captured, each of its events scored once (the score is that of the 4 events sent),
//! routed once, delivered under one webhook-id. Any violation fails the run.
//!
//! The handlers run in this process, so the profile this is built with (`--release` or not) is
//! the handlers' profile.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use leadflow_domain::webhook::WebhookSecret;
use leadflow_local::cpu::{cpu_seconds, tree_cpu_seconds};
use leadflow_local::poller::DeliveryFaults;
use leadflow_local::soak::{self, Posted, StandInCrm, EVENTS_PER_LEAD, POISON_QUEUES};
use leadflow_local::stack::WEBHOOK_SECRET_PARAM;
use leadflow_local::{Emulator, LocalStack};
use std::fmt::Write as _;

const USAGE: &str =
    "usage: load-bench [--leads 100] [--clients 16] [--rate LEADS_PER_S] [--timeout 300]
                  [--duplicate-deliveries] [--crm-fail-first PCT] [--poison N] [--verify]
                  [--visibility-timeout S]";

/// With faults, the pollers receive with this visibility timeout (`--visibility-timeout`)
/// instead of the queues' (60 s, 90 s): a poison message's 5 receives (50 on CrmWebhookQueue)
/// then take under a minute (eight), not five minutes (75). It must stay above the time a batch
/// takes under the run's load, or healthy messages come back while still being worked on and,
/// after 5 receives, end on a DLQ: 2 s did, with 5 batches per queue at once and 10,000 leads.
const SOAK_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10);

/// With a failing CRM, the first retry comes after 1 to 2 s instead of the template's 15 to 30.
const SOAK_CRM_RETRY_BASE: &str = "CrmRetryBaseSeconds=2";

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

struct Args {
    leads: usize,
    clients: usize,
    rate: Option<f64>,
    timeout: Duration,
    duplicates: bool,
    crm_fail_first: u8,
    poison: usize,
    verify: bool,
    visibility_timeout: Duration,
}

impl Args {
    fn faults(&self) -> bool {
        self.duplicates || self.crm_fail_first > 0 || self.poison > 0
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        leads: 100,
        clients: 16,
        rate: None,
        timeout: Duration::from_secs(300),
        duplicates: false,
        crm_fail_first: 0,
        poison: 0,
        verify: false,
        visibility_timeout: SOAK_VISIBILITY_TIMEOUT,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<f64, String> {
            let v = it
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{name}: {v:?} is not a number of 0 or more\n{USAGE}"))
        };
        match arg.as_str() {
            "--leads" => parsed.leads = value("--leads")? as usize,
            "--clients" => parsed.clients = value("--clients")? as usize,
            "--rate" => parsed.rate = Some(value("--rate")?).filter(|r| *r > 0.0),
            "--timeout" => parsed.timeout = Duration::from_secs_f64(value("--timeout")?),
            "--duplicate-deliveries" => parsed.duplicates = true,
            "--crm-fail-first" => {
                let pct = value("--crm-fail-first")?;
                if pct > 100.0 {
                    return Err(format!("--crm-fail-first is a percentage\n{USAGE}"));
                }
                parsed.crm_fail_first = pct as u8;
            }
            "--poison" => parsed.poison = value("--poison")? as usize,
            "--verify" => parsed.verify = true,
            "--visibility-timeout" => {
                parsed.visibility_timeout =
                    Duration::from_secs(value("--visibility-timeout")?.max(1.0) as u64)
            }
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
    // The pollers log every batch at info; failures (warnings) still show, except with faults,
    // where every poison receive and failed CRM attempt would warn by design.
    leadflow_local::init_logs(if args.faults() { "error" } else { "warn" });
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
    if args.faults() {
        println!(
            "  faults    every message delivered twice: {}; CRM fails the first attempt of {} % of webhook-ids (retry base 2 s); {} poison messages; pollers' visibility timeout {} s",
            if args.duplicates { "yes" } else { "no" },
            args.crm_fail_first,
            args.poison,
            args.visibility_timeout.as_secs()
        );
    }

    // A fresh stack with a signing secret of its own.
    let started = Instant::now();
    let emulator =
        tokio::task::spawn_blocking(|| Emulator::from_env_or_start("127.0.0.1", 0)).await??;
    let emulator_pid = emulator.pid().map(|p| p.to_string());
    let secret_value = soak::random_secret();
    let secret = WebhookSecret::parse(&secret_value)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let stack_name = format!("load-bench-{run_id}");
    let params: Vec<String> = RAISED_LIMITS
        .iter()
        .map(|p| p.to_string())
        .chain((args.crm_fail_first > 0).then(|| SOAK_CRM_RETRY_BASE.to_string()))
        .chain([format!("{WEBHOOK_SECRET_PARAM}={secret_value}")])
        .collect();
    let mut stack = LocalStack::provision(emulator.endpoint(), &stack_name, &params, false).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    stack.override_env("PUBLIC_API_URL", &api)?;

    // The stand-in CRM, and the example configuration sending every lead to it.
    let crm = StandInCrm::start(secret, args.crm_fail_first).await?;
    let example = std::fs::read_to_string(leadflow_local::config::example_path())?;
    if !example.contains(EXAMPLE_CRM) {
        return Err(format!("config/leadflow.yaml no longer sends to {EXAMPLE_CRM}").into());
    }
    let config = leadflow_local::config::push(
        &stack,
        &example.replace(EXAMPLE_CRM, &crm.url),
        Some("load-bench: routing.crm is the bench's receiver"),
    )
    .await
    .map_err(|e| format!("config: {e}"))?;

    // The stack as `cargo dev` runs it.
    let faults = DeliveryFaults {
        duplicates: args.duplicates,
        visibility_timeout: args.faults().then_some(args.visibility_timeout),
        ..Default::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(stack.router().serve(listener));
    for p in stack.pollers() {
        if args.faults() {
            tasks.spawn(p.run_with(faults.clone()));
        } else {
            tasks.spawn(p.run());
        }
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
    println!(
        "  crm       {}, signatures checked (Standard Webhooks)",
        crm.url
    );
    println!(
        "  per lead  POST /leads, then {EVENTS_PER_LEAD} x POST /events (one event each, by visitor_token)"
    );
    println!(
        "  ready in  {:.1} s (emulator, provisioning, config)",
        started.elapsed().as_secs_f64()
    );

    // The clients.
    let cpu_before = (
        emulator_pid.as_deref().and_then(tree_cpu_seconds),
        cpu_seconds("self"),
    );
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..args.clients.min(args.leads) {
        let client = leadflow_local::http_client_builder()
            .local_address(soak::client_address(c))
            .timeout(Duration::from_secs(60))
            .build()?;
        let (next, api, run_id) = (next.clone(), api.clone(), run_id.clone());
        let (leads, rate) = (args.leads, args.rate);
        clients.spawn(async move {
            let mut done: Vec<Result<Posted, soak::Failed>> = Vec::new();
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
                done.push(soak::post_lead(&client, &api, email).await);
            }
        });
    }
    // Poison among the leads: message j once the clients have started lead j * leads / N.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let poisoning = async {
        let mut sent = Vec::new();
        for j in 0..args.poison {
            while next.load(Ordering::Relaxed) < j * args.leads / args.poison {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent.push(soak::send_poison(&stack, &sqs, &run_id, &POISON_QUEUES, j).await);
        }
        sent
    };
    let mut posted = Vec::new();
    let mut figures = Figures {
        leads: args.leads,
        ..Default::default()
    };
    let taking_in = async {
        let mut all = Vec::new();
        while let Some(done) = clients.join_next().await {
            all.push(done);
        }
        all
    };
    let (poison, taken) = tokio::join!(poisoning, taking_in);
    let poison = poison.into_iter().collect::<Result<Vec<_>, _>>()?;
    for done in taken {
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
        let arrived = crm.delivered();
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
            emulator_pid.as_deref().and_then(tree_cpu_seconds),
            cpu_seconds("self"),
        ),
    ) {
        ((Some(e0), Some(b0)), (Some(e1), Some(b1))) => Some((e1 - e0, b1 - b0)),
        _ => None,
    };
    // Late repeats still count, so the receiver keeps running until the figures are taken;
    // with faults or checks, until the queues are empty and the poison is on the DLQs.
    let settled = if args.faults() || args.verify {
        println!("settling: waiting for the work queues to empty and the poison to reach the DLQs");
        Some(soak::settle(&stack, &sqs, &poison, args.timeout).await?)
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        None
    };
    let log = crm.log();
    for p in &posted {
        figures.capture.push(p.capture);
        figures.events.extend(&p.events);
        if let Some(at) = log.leads.get(&p.email).and_then(|l| l.first_accepted) {
            figures.capture_to_crm.push(at - p.capture_sent);
            figures
                .last_event_to_crm
                .push(at.saturating_duration_since(p.taken_in));
        }
    }
    figures.delivered = posted
        .iter()
        .filter(|p| {
            log.leads
                .get(&p.email)
                .is_some_and(|l| l.first_accepted.is_some())
        })
        .count();
    figures.repeated_attempts = log.repeated_attempts();
    figures.delivered_again_new_id = log.again_new_id();
    figures.rejected_signatures = log.rejected;
    figures.last_delivery_after = log
        .leads
        .values()
        .filter_map(|l| l.first_accepted)
        .map(|at| at - t0)
        .max();

    println!("results (load average {} at the end)", load_average());
    print!("{}", figures.report());
    let mut ok = figures.ok();
    if let Some(settled) = settled {
        let check = soak::check_leads(&stack, &posted, &log).await?;
        let soak = soak::SoakReport {
            check,
            settled,
            deliveries: faults.stats.counts(),
        };
        println!("checked, lead by lead (table and CRM):");
        print!("{}", soak.report());
        if soak.ok() {
            println!("OK: nothing lost, nothing scored, assigned or handed over twice; the poison is on the DLQs");
        } else {
            println!("FAIL: see the checks above");
        }
        ok &= soak.ok();
    }
    if figures.ok() {
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
    drop(crm);
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
        assert!(!a.faults());
        let soak = parse_args(
            [
                "--duplicate-deliveries",
                "--crm-fail-first",
                "20",
                "--poison",
                "8",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        assert!(soak.faults());
        assert_eq!(
            (soak.duplicates, soak.crm_fail_first, soak.poison),
            (true, 20, 8)
        );
        assert_eq!(soak.visibility_timeout, Duration::from_secs(10));
        let slow = parse_args(["--visibility-timeout".to_string(), "30".into()]).unwrap();
        assert_eq!(slow.visibility_timeout, Duration::from_secs(30));
        assert!(parse_args(["--crm-fail-first".to_string(), "120".into()]).is_err());
    }
}
