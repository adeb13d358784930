//! `leadflow`: operations on a leadflow deployment (or the local stack).
//!
//! `leadflow config check [FILE]` validates a configuration file, naming line and field of
//! every problem; `push` stores it as the next immutable version and makes it active; `show`
//! prints the active (or a given) version.
//!
//! The table is `--table`, else `TABLE_NAME`, else the one `cargo dev` is running (it writes
//! `.local/dev-stack.json`). The endpoint is `--endpoint-url`, else `AWS_ENDPOINT_URL`, else
//! the dev stack's when the table came from it, else AWS itself.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_domain::config::{LeadflowConfig, StoredConfig};
use leadflow_domain::ports::ConfigStore;

#[derive(Parser)]
#[command(
    name = "leadflow",
    version,
    about = "Operate leadflow: configuration and more"
)]
struct Cli {
    /// The DynamoDB table of the stack.
    #[arg(long, global = true)]
    table: Option<String>,
    /// An AWS endpoint such as an emulator (default: AWS_ENDPOINT_URL, or the dev stack's).
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The scoring model (and later routing and SLA policy) as versioned data.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validates a configuration file.
    Check {
        #[arg(default_value = "config/leadflow.yaml")]
        file: PathBuf,
    },
    /// Validates a file, stores it as the next version and makes it active.
    Push {
        #[arg(default_value = "config/leadflow.yaml")]
        file: PathBuf,
        /// Why this version: kept with it.
        #[arg(long)]
        note: Option<String>,
    },
    /// Prints the active version (or `--version N`).
    Show {
        #[arg(long)]
        version: Option<u64>,
    },
}

#[derive(serde::Deserialize)]
struct DevStack {
    endpoint: String,
    region: String,
    table: String,
}

/// `.local/dev-stack.json` of the workspace the command runs in, written by `cargo dev`.
fn dev_stack() -> Option<DevStack> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".local/dev-stack.json");
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            return serde_json::from_str(&text).ok();
        }
        if !dir.pop() {
            return None;
        }
    }
}

async fn store(cli: &Cli) -> Result<DynamoStore, String> {
    let env_table = std::env::var("TABLE_NAME").ok().filter(|t| !t.is_empty());
    let dev = if cli.table.is_none() && env_table.is_none() {
        dev_stack()
    } else {
        None
    };
    let table = cli
        .table
        .clone()
        .or(env_table)
        .or_else(|| dev.as_ref().map(|d| d.table.clone()))
        .ok_or("no table: pass --table, set TABLE_NAME, or run `cargo dev` in this workspace")?;
    let endpoint = cli
        .endpoint_url
        .clone()
        .or_else(|| {
            std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|e| !e.is_empty())
        })
        .or_else(|| dev.as_ref().map(|d| d.endpoint.clone()));
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = &endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(dev) = &dev {
        // The dev stack's emulator takes any credentials.
        loader = loader
            .region(aws_config::Region::new(dev.region.clone()))
            .credentials_provider(leadflow_aws::aws_sdk_dynamodb::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "leadflow-dev",
            ));
    }
    let sdk = loader.load().await;
    Ok(DynamoStore::new(
        leadflow_aws::aws_sdk_dynamodb::Client::new(&sdk),
        table,
    ))
}

fn read_checked(file: &Path) -> Result<(String, LeadflowConfig), String> {
    let yaml = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let config = LeadflowConfig::parse(&yaml).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((yaml, config))
}

fn describe(stored: &StoredConfig) -> String {
    format!(
        "version {} (pushed {}{})",
        stored.version,
        stored.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        stored
            .note
            .as_deref()
            .map(|n| format!(", \"{n}\""))
            .unwrap_or_default()
    )
}

async fn run(cli: Cli) -> Result<(), String> {
    let Command::Config { action } = &cli.command;
    match action {
        ConfigAction::Check { file } => {
            let (_, config) = read_checked(file)?;
            println!("{}: ok ({})", file.display(), config.summary());
        }
        ConfigAction::Push { file, note } => {
            let (yaml, config) = read_checked(file)?;
            let store = store(&cli).await?;
            let before = store
                .active()
                .await
                .map_err(|e| e.to_string())?
                .map(|c| c.version);
            let stored = store
                .push(&yaml, note.as_deref(), chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())?;
            if before == Some(stored.version) {
                println!(
                    "unchanged: {} is active and has this text",
                    describe(&stored)
                );
            } else {
                println!(
                    "pushed {} as active: {}",
                    describe(&stored),
                    config.summary()
                );
            }
        }
        ConfigAction::Show { version } => {
            let store = store(&cli).await?;
            let stored = match version {
                Some(v) => store.version(*v).await,
                None => store.active().await,
            }
            .map_err(|e| e.to_string())?
            .ok_or_else(|| match version {
                Some(v) => format!("there is no version {v}"),
                None => "no configuration has been pushed yet (leadflow config push)".to_owned(),
            })?;
            println!("# leadflow configuration {}", describe(&stored));
            print!("{}", stored.yaml);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leadflow: {e}");
            ExitCode::FAILURE
        }
    }
}
