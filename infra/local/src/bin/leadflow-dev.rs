//! `cargo dev`: the whole pipeline on this machine. Starts moto on 127.0.0.1:4566 (or uses
//! `AWS_ENDPOINT_URL`), provisions template.yaml on it, serves the HTTP routes on
//! 127.0.0.1:3000 with the real handlers, polls the queues like Lambda event source mappings and
//! runs the schedules. Ctrl-C stops everything.

use std::process::ExitCode;

use leadflow_local::{Emulator, LocalStack};

/// The CRM signing secret of the local stack (not a secret: for local receivers only).
const LOCAL_CRM_SECRET: &str = "whsec_bGVhZGZsb3ctbG9jYWwtZGV2LXNlY3JldC0zMi1ieXRlcw==";
const USAGE: &str = "usage: cargo dev [--http-port 3000] [--emulator-port 4566] [--stack-name leadflow-local] [--param Key=Value ...]";

struct Args {
    http_port: u16,
    emulator_port: u16,
    stack_name: String,
    params: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        http_port: 3000,
        emulator_port: 4566,
        stack_name: "leadflow-local".into(),
        params: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--http-port" => {
                args.http_port = value("--http-port")?
                    .parse()
                    .map_err(|e| format!("--http-port: {e}"))?
            }
            "--emulator-port" => {
                args.emulator_port = value("--emulator-port")?
                    .parse()
                    .map_err(|e| format!("--emulator-port: {e}"))?
            }
            "--stack-name" => args.stack_name = value("--stack-name")?,
            "--param" => args.params.push(value("--param")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    // Deliveries to a local CRM receiver are signed with a known development secret unless
    // one is given: the local stack puts it into the template's signing secret on the
    // emulator's Secrets Manager (config: env:CRM_WEBHOOK_SECRET).
    if !args
        .params
        .iter()
        .any(|p| p.starts_with("CrmWebhookSecret="))
    {
        args.params
            .push(format!("CrmWebhookSecret={LOCAL_CRM_SECRET}"));
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
    leadflow_local::init_logs("info");
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadflow dev: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let emulator_port = args.emulator_port;
    let emulator = tokio::task::spawn_blocking(move || {
        Emulator::from_env_or_start("127.0.0.1", emulator_port)
    })
    .await??;
    // An emulator started here is empty; one from AWS_ENDPOINT_URL may hold the stack of an
    // earlier run, which is used as it is.
    let mut stack = LocalStack::provision(
        emulator.endpoint(),
        &args.stack_name,
        &args.params,
        !emulator.is_owned(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.http_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.http_port))?;

    // Links in what the CRM receives point at this local API.
    stack.override_env(
        "PUBLIC_API_URL",
        &format!("http://127.0.0.1:{}", args.http_port),
    )?;
    let m = &stack.manifest;
    let table = m.resource("LeadsTable").unwrap_or_default().to_owned();
    // The CLI (`cargo leadflow ...`) finds the running stack through this file.
    let dev_stack = leadflow_local::workspace_root().join(".local/dev-stack.json");
    let described = serde_json::json!({ "endpoint": emulator.endpoint(), "region": m.region, "table": table, "stack_name": m.stack_name, "bus": m.resource("LeadBus"), "queues": { "CrmWebhookQueue": m.resource("CrmWebhookQueue"), "CrmWebhookDLQ": m.resource("CrmWebhookDLQ") } });
    std::fs::create_dir_all(dev_stack.parent().unwrap_or(&dev_stack))?;
    std::fs::write(&dev_stack, serde_json::to_string_pretty(&described)?)?;
    // For running one handler on its own: `cargo lambda watch --env-file .local/env/<binary>.env`.
    let env_dir = leadflow_local::workspace_root().join(".local/env");
    leadflow_local::env_files::write_all(m, &env_dir)?;
    let config = leadflow_local::config::ensure_active(&stack).await?;

    println!("leadflow local stack");
    println!(
        "  emulator  {} ({})",
        emulator.endpoint(),
        if emulator.is_owned() {
            "moto, started here"
        } else {
            "from AWS_ENDPOINT_URL"
        }
    );
    println!("  stack     {} in {}", m.stack_name, m.region);
    println!("  table     {}", m.resource("LeadsTable").unwrap_or("?"));
    println!("  bus       {}", m.resource("LeadBus").unwrap_or("?"));
    println!("  config    {config}");
    if let Some(secret) = args
        .params
        .iter()
        .find_map(|p| p.strip_prefix("CrmWebhookSecret="))
    {
        println!(
            "  crm       deliveries signed with {secret} (python3 infra/local/py/crm_receiver.py)"
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (route, binary) in m.routes() {
        println!(
            "  http      {:<7} http://127.0.0.1:{}{} -> {binary}",
            route.method, args.http_port, route.path
        );
    }
    tasks.spawn(stack.router().serve(listener));
    let pollers = stack.pollers();
    for f in stack.functions.values() {
        for q in &f.spec.queues {
            println!(
                "  queue     {} -> {} (batch {})\n            {}",
                q.queue_logical_id, f.binary, q.batch_size, q.queue_url
            );
        }
    }
    for p in pollers {
        tasks.spawn(p.run());
    }
    for s in stack.schedules() {
        match s.every {
            Some(every) => {
                println!("  schedule  {} -> {}", s.expression, s.function);
                tasks.spawn(leadflow_local::schedule::run(
                    s.rule_name,
                    every,
                    s.function,
                    s.handler,
                ));
            }
            None => println!(
                "  schedule  {} -> {}: not run locally (only rate() expressions are)",
                s.expression, s.function
            ),
        }
    }
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    println!("\nstopping");
    tasks.shutdown().await;
    let _ = std::fs::remove_file(&dev_stack);
    drop(emulator);
    Ok(())
}
