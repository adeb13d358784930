//! `sla-bench`: how the SLA tick copes when many leads are due at once. Not a test: a
//! measurement (docs/performance.md, "SLA tick: 10,000 leads due at once").
//!
//!     cargo run --release -p leadflow-local --bin sla-bench -- --leads 10000
//!
//! Starts its own moto (or uses `AWS_ENDPOINT_URL`), provisions a fresh stack from
//! template.yaml, pushes config/leadflow.yaml, and writes `--leads` leads straight into the
//! store, each an MQL assigned to anna in pool inside-sales at the same moment (Monday
//! 2026-11-23 09:00 UTC), so the first step of every ladder (team dach-sales: remind_owner
//! after 2 working days) falls due at the same instant. Then runs the sla-tick function's
//! `run_at` at that instant, tick after tick, until a tick finds nothing due, and prints what
//! each tick did and how long it took. Exits non-zero unless every lead got exactly one step.

#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_domain::config::LeadflowConfig;
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::ports::{ConfigStore, LeadStore, LeadWrite};
use leadflow_domain::routing::{self, RoutingFacts};
use leadflow_domain::scoring::{Grade, Points, ScoreBand, Temperature};
use leadflow_domain::{Lead, LeadId, Qualification, Stage, SubmissionRules};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_local::cpu::{cpu_seconds, tree_cpu_seconds};
use leadflow_local::{Emulator, LocalStack};
use sla_tick::{SlaTick, TickSettings};

const USAGE: &str = "usage: sla-bench [--leads 10000] [--concurrency 8] [--budget-seconds 40] [--write-concurrency 32] [--sample 20]";

/// When every lead is assigned: a Monday, 10:00 in Berlin.
const T0: &str = "2026-11-23T09:00:00Z";
const POOL: &str = "inside-sales";
const OWNER: &str = "anna";
/// Ticks that take no step while leads are still due before the bench gives up.
const MAX_IDLE_TICKS: usize = 3;

struct Args {
    leads: usize,
    concurrency: usize,
    budget_seconds: u64,
    write_concurrency: usize,
    sample: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        leads: 10_000,
        concurrency: TickSettings::DEFAULT.concurrency,
        budget_seconds: TickSettings::DEFAULT.budget.as_secs(),
        write_concurrency: 32,
        sample: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}: {v:?} is not a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--leads" => args.leads = number("--leads")? as usize,
            "--concurrency" => args.concurrency = number("--concurrency")? as usize,
            "--budget-seconds" => args.budget_seconds = number("--budget-seconds")?,
            "--write-concurrency" => {
                args.write_concurrency = number("--write-concurrency")? as usize
            }
            "--sample" => args.sample = number("--sample")? as usize,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Failed steps are logged by sla-tick as warnings; the per-step info lines are not shown.
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

/// CPU seconds of this process and of the emulator, for the note at the end.
struct Cpu {
    bench: Option<f64>,
    emulator: Option<f64>,
}

impl Cpu {
    fn now(emulator: Option<&str>) -> Self {
        Self {
            bench: cpu_seconds("self"),
            emulator: emulator.and_then(tree_cpu_seconds),
        }
    }

    fn since(&self, earlier: &Cpu) -> (Option<f64>, Option<f64>) {
        (
            self.bench.zip(earlier.bench).map(|(a, b)| a - b),
            self.emulator.zip(earlier.emulator).map(|(a, b)| a - b),
        )
    }
}

fn cpu_line(label: &str, wall: Duration, used: (Option<f64>, Option<f64>)) -> String {
    let share = |s: Option<f64>| match s {
        Some(s) => format!(
            "{s:.1} s CPU ({:.0}% of one core)",
            100.0 * s / wall.as_secs_f64().max(1e-9)
        ),
        None => "unknown".into(),
    };
    format!(
        "  {label:<6} {:.1} s wall: emulator {}, sla-bench {}",
        wall.as_secs_f64(),
        share(used.1),
        share(used.0)
    )
}

async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let t0: DateTime<Utc> = T0.parse()?;
    println!(
        "sla-bench: {} leads, tick concurrency {}, budget {} s, page 100, writes {} at a time",
        args.leads, args.concurrency, args.budget_seconds, args.write_concurrency
    );

    // The emulator and a fresh stack.
    let started = Instant::now();
    let emulator =
        tokio::task::spawn_blocking(|| Emulator::from_env_or_start("127.0.0.1", 0)).await??;
    let emulator_pid = emulator.pid().map(|p| p.to_string());
    let stack_name = format!(
        "sla-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let stack = LocalStack::provision(emulator.endpoint(), &stack_name, &[], false).await?;
    let config_note = leadflow_local::config::ensure_active(&stack)
        .await
        .map_err(|e| format!("config: {e}"))?;
    let table = stack
        .manifest
        .resource("LeadsTable")
        .ok_or("the stack has no LeadsTable")?
        .to_owned();
    let bus = stack
        .manifest
        .resource("LeadBus")
        .ok_or("the stack has no LeadBus")?
        .to_owned();
    let store = DynamoStore::new(
        leadflow_aws::aws_sdk_dynamodb::Client::new(&stack.sdk),
        table.clone(),
    );
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
    println!("  stack     {stack_name}, table {table}");
    println!("  config    {config_note}");
    println!(
        "  ready in  {:.1} s (emulator start, provisioning, config)",
        started.elapsed().as_secs_f64()
    );

    let active = store
        .active()
        .await?
        .ok_or("no configuration is active after the push")?;
    let config = LeadflowConfig::parse(&active.yaml)?;
    let routing = config
        .routing
        .as_ref()
        .ok_or("config/leadflow.yaml has no routing section")?;
    let anna = routing
        .owner(OWNER)
        .ok_or("config/leadflow.yaml has no owner anna")?;

    // The leads: built here, written with bounded concurrency.
    let build_started = Instant::now();
    let no_interests = BTreeMap::new();
    let nobody = BTreeSet::new();
    let mut writes = Vec::with_capacity(args.leads);
    for i in 0..args.leads {
        let raw = vec![
            ("email".to_owned(), format!("sla-bench-{i:06}@example.com")),
            ("company".to_owned(), "Beispiel GmbH".to_owned()),
            ("country".to_owned(), "DE".to_owned()),
        ];
        let submission = SubmissionRules::default()
            .validate(&raw)
            .map_err(|e| format!("lead {i}: {e:?}"))?;
        let mut lead: Lead = Lead::capture(
            LeadId::new_at(t0),
            submission,
            &SubmissionContext::default(),
            t0,
        )
        .lead;
        lead.stage = Stage::Mql;
        lead.qualification = Some(Qualification {
            score: Points::from_cents(7000),
            band: ScoreBand::Mql,
            grade: Grade::B,
            temperature: Temperature::Warm,
            product: None,
            config_version: active.version,
            at: t0,
        });
        let assignment = {
            let plan = routing.plan(&RoutingFacts::of(&lead, &no_interests, &nobody));
            if plan.pool.id != POOL {
                return Err(
                    format!("the lead was planned for pool {}, not {POOL}", plan.pool.id).into(),
                );
            }
            routing::assign(&plan, Some(anna), &config.sla, active.version, t0)?
        };
        let change = lead.assign(assignment, t0);
        writes.push(LeadWrite {
            lead,
            expected_version: None,
            timeline: change.timeline,
            events: vec![],
        });
    }
    let built = build_started.elapsed();
    let ids: Vec<LeadId> = writes.iter().map(|w| w.lead.id).collect();

    let cpu_before_setup = Cpu::now(emulator_pid.as_deref());
    let write_started = Instant::now();
    let writes = Arc::new(writes);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.write_concurrency.min(args.leads) {
        let (writes, next, store) = (writes.clone(), next.clone(), store.clone());
        workers.spawn(async move {
            let mut failed = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(w) = writes.get(i) else {
                    return failed;
                };
                if let Err(e) = store.write(w).await {
                    failed.push(format!("lead {i}: {e}"));
                }
            }
        });
    }
    let mut write_failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        write_failures.extend(done?);
    }
    let setup = write_started.elapsed();
    let setup_cpu = Cpu::now(emulator_pid.as_deref()).since(&cpu_before_setup);
    println!(
        "setup: {} leads built in {:.2} s, written in {:.1} s ({:.0} leads/s, {} at a time)",
        args.leads,
        built.as_secs_f64(),
        setup.as_secs_f64(),
        args.leads as f64 / setup.as_secs_f64(),
        args.write_concurrency
    );
    if !write_failures.is_empty() {
        println!(
            "FAIL: {} of {} lead writes failed, e.g. {}",
            write_failures.len(),
            args.leads,
            write_failures[0]
        );
        return Ok(false);
    }

    // The instant every first step is due: the stored assignment's deadline.
    let first = store
        .get(ids[0])
        .await?
        .ok_or("the first lead is not stored")?;
    let assignment = first.assignment.as_ref().ok_or("no assignment stored")?;
    let due_at = assignment.sla_deadline;
    let next_due = assignment.sla.as_ref().and_then(|t| t.next_due);
    println!(
        "every lead assigned to {} in {} at {t0}; first step due {due_at} (next_due {})",
        assignment.assignee_id(),
        assignment.pool,
        next_due.map_or("none".to_owned(), |d| d.to_string())
    );
    if next_due != Some(due_at) {
        println!("FAIL: the stored lead has no ladder due at its deadline");
        return Ok(false);
    }

    // Ticks at that instant until one finds nothing due.
    let settings = TickSettings {
        budget: Duration::from_secs(args.budget_seconds),
        page: 100,
        concurrency: args.concurrency,
    };
    let tick = SlaTick::new(
        store.clone(),
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&stack.sdk), bus),
        ActiveConfig::new(store.clone(), Duration::ZERO),
        settings,
    );
    println!(
        "{:>4} {:>8} {:>6} {:>6} {:>7} {:>7} {:>6} {:>5} {:>8}",
        "tick", "wall s", "due", "steps", "stopped", "skipped", "failed", "left", "steps/s"
    );
    let cpu_before_ticks = Cpu::now(emulator_pid.as_deref());
    let ticks_started = Instant::now();
    let (mut ticks, mut steps, mut failed, mut idle) = (0usize, 0usize, 0usize, 0usize);
    loop {
        ticks += 1;
        let tick_started = Instant::now();
        let report = tick.run_at(due_at).await?;
        let wall = tick_started.elapsed();
        steps += report.steps;
        failed += report.failed;
        println!(
            "{:>4} {:>8.1} {:>6} {:>6} {:>7} {:>7} {:>6} {:>5} {:>8.1}",
            ticks,
            wall.as_secs_f64(),
            report.due,
            report.steps,
            report.stopped,
            report.skipped,
            report.failed,
            if report.left_for_next_tick {
                "yes"
            } else {
                "no"
            },
            report.steps as f64 / wall.as_secs_f64().max(1e-9)
        );
        if report.due == 0 {
            break;
        }
        idle = if report.steps == 0 { idle + 1 } else { 0 };
        if idle >= MAX_IDLE_TICKS {
            println!("FAIL: {MAX_IDLE_TICKS} ticks in a row took no step while leads were due");
            break;
        }
    }
    let total = ticks_started.elapsed();
    let ticks_cpu = Cpu::now(emulator_pid.as_deref()).since(&cpu_before_ticks);
    let working_ticks = ticks - 1;
    println!(
        "totals: {ticks} ticks ({working_ticks} with work, the last found nothing due), {:.1} s, {steps} steps taken of {} leads, {failed} failed lead attempts, {:.1} steps/s overall",
        total.as_secs_f64(),
        args.leads,
        steps as f64 / total.as_secs_f64().max(1e-9)
    );
    if emulator_pid.is_some() {
        println!("emulator (moto, one Python process) and sla-bench CPU time:");
        println!("{}", cpu_line("setup", setup, setup_cpu));
        println!("{}", cpu_line("ticks", total, ticks_cpu));
    } else {
        println!("emulator: not started here (AWS_ENDPOINT_URL), its CPU time is not measured");
    }

    // A sample of leads: one step each.
    let mut seed = Utc::now().timestamp_subsec_nanos() as u64 | 1;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut picked = BTreeSet::new();
    while picked.len() < args.sample.min(ids.len()) {
        picked.insert((random() % ids.len() as u64) as usize);
    }
    let mut wrong = Vec::new();
    for &i in &picked {
        let lead = store.get(ids[i]).await?.ok_or("a sampled lead is gone")?;
        let taken = lead
            .assignment
            .as_ref()
            .and_then(|a| a.sla.as_ref())
            .map(|t| t.steps_taken);
        if taken != Some(1) {
            wrong.push(format!("lead {i} ({}): steps_taken {taken:?}", ids[i]));
        }
    }
    println!(
        "sample: {} random leads checked, {} with sla.steps_taken == 1",
        picked.len(),
        picked.len() - wrong.len()
    );

    let mut ok = true;
    if steps != args.leads {
        println!(
            "FAIL: {steps} steps taken, expected {} (one per lead)",
            args.leads
        );
        ok = false;
    }
    if !wrong.is_empty() {
        println!("FAIL: sampled leads without exactly one step: {wrong:?}");
        ok = false;
    }
    if ok {
        println!("OK: every lead got its first step exactly once");
    }
    drop(emulator);
    Ok(ok)
}
