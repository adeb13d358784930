//! `leadflow`: operations on a leadflow deployment (or the local stack).
//!
//! `leadflow config check [FILE]` validates a configuration file, naming line and field of
//! every problem, and tells which CRM secrets (Secrets Manager ARNs) lie outside the deployed
//! secret prefix, which the CRM functions may not read; `push` checks the same, then stores the
//! file as the next immutable version and makes it active; `show` prints the active (or a
//! given) version.
//!
//! `leadflow dlq replay <queue> [--max N] [--dry-run]` moves the messages parked on the
//! dead-letter queue of `<queue>` (score-event, qualify, route, crm-webhook) back to that queue;
//! `leadflow crm replay` is the same for crm-webhook (see `replay.rs` for how it finds the
//! queues).
//!
//! The table is `--table`, else `TABLE_NAME`, else the one `cargo dev` is running (it writes
//! `.local/dev-stack.json`). The endpoint is `--endpoint-url`, else `AWS_ENDPOINT_URL`, else
//! the dev stack's when the table came from it, else AWS itself.

mod replay;
mod sla;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_domain::config::{LeadflowConfig, StoredConfig};
use leadflow_domain::endpoint::EndpointMode;
use leadflow_domain::ports::ConfigStore;

#[derive(Parser)]
#[command(
    name = "leadflow",
    version,
    about = "Operate leadflow: configuration, CRM dead-letter replay and more"
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
    /// The CRM webhook delivery.
    Crm {
        #[command(subcommand)]
        action: CrmAction,
    },
    /// The dead-letter queues: what failed for good, and its replay.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The SLA ladders: run a tick at a chosen time, list what is due.
    Sla {
        #[command(subcommand)]
        action: sla::SlaAction,
    },
}

#[derive(Subcommand)]
enum CrmAction {
    /// Moves the deliveries parked on the CRM webhook's dead-letter queue back to its queue.
    Replay(replay::ReplayArgs),
}

#[derive(Subcommand)]
enum DlqAction {
    /// Moves the messages parked on a queue's dead-letter queue back to the queue (its
    /// function handles each again; every handler is idempotent).
    Replay(replay::DlqReplayArgs),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validates a configuration file.
    Check {
        #[arg(default_value = "config/leadflow.yaml")]
        file: PathBuf,
        /// The `CrmSecretPrefix` the stack was deployed with (default: the one the stack's
        /// table records, else the template's default).
        #[arg(long)]
        crm_secret_prefix: Option<String>,
        /// Check for the local stack: CRM endpoints may be http and on this machine (implied
        /// when the CLI talks to an emulator: `--endpoint-url`, `AWS_ENDPOINT_URL`, `cargo dev`).
        #[arg(long)]
        local: bool,
    },
    /// Validates a file, stores it as the next version and makes it active.
    Push {
        #[arg(default_value = "config/leadflow.yaml")]
        file: PathBuf,
        /// Why this version: kept with it.
        #[arg(long)]
        note: Option<String>,
        /// As for `check` (default: the one the stack's table records).
        #[arg(long)]
        crm_secret_prefix: Option<String>,
        /// As for `check`.
        #[arg(long)]
        local: bool,
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
    #[serde(default)]
    stack_name: Option<String>,
    /// Logical id → URL of the stack's queues (`CrmWebhookQueue`, `CrmWebhookDLQ`); an entry
    /// is null when the stack has no such queue.
    #[serde(default)]
    queues: std::collections::BTreeMap<String, Option<String>>,
    /// The stack's event bus.
    #[serde(default)]
    bus: Option<String>,
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
    connect(cli).await.map(|(store, _, _)| store)
}

/// The stack's table, the SDK configuration, and the dev stack when the table came from it.
async fn connect(
    cli: &Cli,
) -> Result<(DynamoStore, aws_config::SdkConfig, Option<DevStack>), String> {
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
    let sdk = sdk_config(cli, dev.as_ref()).await;
    let store = DynamoStore::new(leadflow_aws::aws_sdk_dynamodb::Client::new(&sdk), table);
    Ok((store, sdk, dev))
}

/// The SDK configuration: the endpoint is `--endpoint-url`, else `AWS_ENDPOINT_URL`, else the
/// dev stack's when `dev` is given (then with its region and the emulator's credentials).
async fn sdk_config(cli: &Cli, dev: Option<&DevStack>) -> aws_config::SdkConfig {
    let endpoint = cli
        .endpoint_url
        .clone()
        .or_else(|| {
            std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|e| !e.is_empty())
        })
        .or_else(|| dev.map(|d| d.endpoint.clone()));
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = &endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(dev) = dev {
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
    loader.load().await
}

fn read_checked(file: &Path) -> Result<(String, LeadflowConfig), String> {
    let yaml = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let config = LeadflowConfig::parse(&yaml).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((yaml, config))
}

/// template.yaml's default `CrmSecretPrefix` (a test keeps the two equal).
const TEMPLATE_SECRET_PREFIX: &str = "leadflow/crm/";
/// The table tag a deployment records its `CrmSecretPrefix` in (template.yaml).
const SECRET_PREFIX_TAG: &str = "leadflow:crm-secret-prefix";

/// The secret prefix to check against, and where it came from.
struct SecretPrefix {
    prefix: String,
    from: String,
}

/// `--crm-secret-prefix`, else what `store`'s table records, else the template's default.
async fn secret_prefix(flag: Option<&str>, store: Result<&DynamoStore, &str>) -> SecretPrefix {
    if let Some(p) = flag {
        return SecretPrefix {
            prefix: p.to_owned(),
            from: "--crm-secret-prefix".into(),
        };
    }
    let fallback = |why: String| SecretPrefix {
        prefix: TEMPLATE_SECRET_PREFIX.into(),
        from: format!("the template's default ({why}; pass --crm-secret-prefix to name it)"),
    };
    let store = match store {
        Ok(s) => s,
        Err(why) => return fallback(why.to_owned()),
    };
    match store.table_tag(SECRET_PREFIX_TAG).await {
        Ok(Some(prefix)) => SecretPrefix {
            prefix,
            from: format!("the {SECRET_PREFIX_TAG} tag of table {}", store.table()),
        },
        Ok(None) => fallback(format!(
            "table {} has no {SECRET_PREFIX_TAG} tag",
            store.table()
        )),
        Err(e) => fallback(format!(
            "the tags of table {} could not be read: {e}",
            store.table()
        )),
    }
}

/// Refuses a configuration whose CRM secrets the deployed functions may not read.
fn check_secrets(config: &LeadflowConfig, prefix: &SecretPrefix) -> Result<(), String> {
    let outside = config.secrets_outside(&prefix.prefix);
    if outside.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = outside
        .iter()
        .map(|(at, arn)| format!("  {at}: {arn}"))
        .collect();
    Err(format!(
        "these CRM secrets lie outside the deployed secret prefix {:?} (from {}):\n{}\n\
         crm-webhook and crm-callback may read only secrets named {:?}...: deliveries to these \
         CRMs would fail and their callbacks answer 503. Store the secrets under the prefix, or \
         deploy with CrmSecretPrefix covering them.",
        prefix.prefix,
        prefix.from,
        lines.join("\n"),
        prefix.prefix,
    ))
}

/// Where the configuration will run: local mode with `--local` or when the CLI talks to an
/// emulator (an endpoint URL, or the dev stack's), else a deployment on AWS. Said with why.
fn endpoint_mode(local: bool, cli: &Cli) -> (EndpointMode, String) {
    if local {
        return (EndpointMode::Local, "--local".into());
    }
    let explicit = cli.endpoint_url.clone().or_else(|| {
        std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|e| !e.is_empty())
    });
    let dev = cli.table.is_none()
        && std::env::var("TABLE_NAME").map_or(true, |t| t.is_empty())
        && dev_stack().is_some();
    match explicit {
        Some(e) => (EndpointMode::Local, format!("the emulator at {e}")),
        None if dev => (EndpointMode::Local, "the `cargo dev` stack".into()),
        None => (
            EndpointMode::Public,
            "a deployment on AWS (pass --local for the local stack)".into(),
        ),
    }
}

/// Refuses a configuration with CRM endpoints that crm-webhook would refuse to send to in
/// `mode`, naming where each is configured.
fn check_endpoints(
    config: &LeadflowConfig,
    (mode, from): &(EndpointMode, String),
) -> Result<(), String> {
    let refused = config.refused_endpoints(*mode);
    if refused.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = refused
        .iter()
        .map(|(at, e)| format!("  {at}: {e}"))
        .collect();
    Err(format!(
        "these endpoints may not be sent to (checked for {from}):\n{}\n\
         Outside local mode a CRM endpoint must be https on a public host: private, loopback \
         and link-local addresses and local host names are refused here and again by \
         crm-webhook after resolving the name.",
        lines.join("\n")
    ))
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
    let action = match &cli.command {
        Command::Config { action } => action,
        Command::Crm {
            action: CrmAction::Replay(args),
        } => {
            return replay::run(&cli, &replay::CRM_WEBHOOK, args)
                .await
                .map_err(|e| format!("crm replay: {e}"))
        }
        Command::Dlq {
            action: DlqAction::Replay(args),
        } => {
            let queue = replay::dead_letter_queue(&args.queue)?;
            return replay::run(&cli, &queue, &args.replay)
                .await
                .map_err(|e| format!("dlq replay {}: {e}", queue.name));
        }
        Command::Sla { action } => return sla::run(&cli, action).await,
    };
    match action {
        ConfigAction::Check {
            file,
            crm_secret_prefix,
            local,
        } => {
            let (_, config) = read_checked(file)?;
            check_endpoints(&config, &endpoint_mode(*local, &cli))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            // A stack is asked only when one is named (or `cargo dev` runs): a check works
            // offline too.
            let store = store(&cli).await;
            let prefix = secret_prefix(
                crm_secret_prefix.as_deref(),
                store.as_ref().map_err(|e| e.as_str()),
            )
            .await;
            check_secrets(&config, &prefix).map_err(|e| format!("{}: {e}", file.display()))?;
            println!("{}: ok ({})", file.display(), config.summary());
        }
        ConfigAction::Push {
            file,
            note,
            crm_secret_prefix,
            local,
        } => {
            let (yaml, config) = read_checked(file)?;
            check_endpoints(&config, &endpoint_mode(*local, &cli))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let store = store(&cli).await?;
            let prefix = secret_prefix(crm_secret_prefix.as_deref(), Ok(&store)).await;
            check_secrets(&config, &prefix).map_err(|e| format!("{}: {e}", file.display()))?;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn replay_args(argv: &[&str]) -> Result<replay::ReplayArgs, clap::Error> {
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Crm {
                action: CrmAction::Replay(args),
            } => Ok(args),
            _ => panic!("parsed as something else"),
        }
    }

    #[test]
    fn dlq_replay_names_the_queue_and_takes_the_replay_flags() {
        let parse = |argv: &[&str]| match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Dlq {
                action: DlqAction::Replay(args),
            }) => Ok(args),
            Ok(_) => panic!("parsed as something else"),
            Err(e) => Err(e),
        };
        let args = parse(&["leadflow", "dlq", "replay", "route", "--max", "5"]).unwrap();
        assert_eq!(args.queue, "route");
        assert_eq!(args.replay.max, Some(5));
        for name in ["score-event", "qualify", "crm-webhook", "RouteDLQ"] {
            assert!(
                parse(&["leadflow", "dlq", "replay", name]).is_ok(),
                "{name}"
            );
        }
        let err = parse(&["leadflow", "dlq", "replay", "outbox"]).unwrap_err();
        assert!(err.to_string().contains("one of: score-event"), "{err}");
        assert!(
            parse(&["leadflow", "dlq", "replay"]).is_err(),
            "the queue is required"
        );
    }

    #[test]
    fn crm_replay_defaults_to_everything_from_the_dev_stack() {
        let args = replay_args(&["leadflow", "crm", "replay"]).unwrap();
        assert_eq!(
            args,
            replay::ReplayArgs {
                max: None,
                dry_run: false,
                queue_url: None,
                dlq_url: None,
                stack: None,
            }
        );
    }

    #[test]
    fn crm_replay_takes_max_dry_run_and_queue_urls() {
        let args = replay_args(&[
            "leadflow",
            "--endpoint-url",
            "http://127.0.0.1:4566",
            "crm",
            "replay",
            "--max",
            "3",
            "--dry-run",
            "--queue-url",
            "https://sqs.eu-west-1.amazonaws.com/1/s-CrmWebhookQueue-a",
            "--dlq-url",
            "https://sqs.eu-west-1.amazonaws.com/1/s-CrmWebhookDLQ-b",
        ])
        .unwrap();
        assert_eq!(args.max, Some(3));
        assert!(args.dry_run);
        assert_eq!(
            args.queue_url.as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/1/s-CrmWebhookQueue-a")
        );
        assert_eq!(
            args.dlq_url.as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/1/s-CrmWebhookDLQ-b")
        );
        let args = replay_args(&["leadflow", "crm", "replay", "--stack", "leadflow-prod"]).unwrap();
        assert_eq!(args.stack.as_deref(), Some("leadflow-prod"));
    }

    #[test]
    fn endpoints_on_this_machine_are_refused_for_a_deployment_and_named() {
        let yaml = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/leadflow.yaml"),
        )
        .unwrap();
        let config = LeadflowConfig::parse(&yaml).unwrap();
        let deployed = (EndpointMode::Public, "a deployment".to_owned());
        let err = check_endpoints(&config, &deployed).unwrap_err();
        assert!(
            err.contains("routing.crm.endpoint: names a loopback address (127.0.0.1)"),
            "{err}"
        );
        assert!(check_endpoints(&config, &(EndpointMode::Local, "--local".into())).is_ok());
        let cli = Cli::try_parse_from([
            "leadflow",
            "--endpoint-url",
            "http://127.0.0.1:4566",
            "config",
            "check",
        ])
        .unwrap();
        assert_eq!(endpoint_mode(false, &cli).0, EndpointMode::Local);
        assert_eq!(endpoint_mode(true, &cli).0, EndpointMode::Local);
    }

    #[test]
    fn the_default_secret_prefix_is_the_templates() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
        )
        .unwrap();
        let param = template
            .split("  CrmSecretPrefix:")
            .nth(1)
            .expect("template.yaml has CrmSecretPrefix");
        let default = param
            .lines()
            .find_map(|l| l.trim().strip_prefix("Default: "))
            .expect("a default");
        assert_eq!(default.trim_matches('"'), TEMPLATE_SECRET_PREFIX);
        assert!(template.contains(&format!("Key: {SECRET_PREFIX_TAG}")));
    }

    #[tokio::test]
    async fn secrets_outside_the_prefix_are_refused_with_where_they_are() {
        let yaml = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/leadflow.yaml"),
        )
        .unwrap();
        let arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:partners/acme-Ab12Cd";
        let config = LeadflowConfig::parse(&yaml.replace("env:CRM_WEBHOOK_SECRET", arn)).unwrap();
        let prefix = secret_prefix(None, Err("no stack named")).await;
        assert_eq!(prefix.prefix, "leadflow/crm/");
        assert!(prefix.from.contains("no stack named"), "{}", prefix.from);
        let err = check_secrets(&config, &prefix).unwrap_err();
        assert!(err.contains(&format!("routing.crm.secret: {arn}")), "{err}");
        assert!(err.contains("\"leadflow/crm/\""), "{err}");
        let flag = secret_prefix(Some("partners/"), Err("unused")).await;
        assert_eq!(flag.from, "--crm-secret-prefix");
        let err = check_secrets(&config, &flag).unwrap_err();
        assert!(!err.contains("routing.crm.secret"), "{err}");
        assert!(
            err.contains("routing.partners.reseller-at.crm.secret"),
            "the shipped partner's secret is under leadflow/crm/: {err}"
        );
        let unchanged = LeadflowConfig::parse(&yaml).unwrap();
        assert!(
            check_secrets(&unchanged, &prefix).is_ok(),
            "env: secrets pass"
        );
        let team_arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:chat/sales-Zz99Yy";
        let notify = yaml.replace(
            "      when_owner_away: reassign\n",
            &format!("      when_owner_away: reassign\n      notify: {{ endpoint: \"https://chat.example.com/hooks/sales\", secret: \"{team_arn}\" }}\n"),
        );
        let err = check_secrets(&LeadflowConfig::parse(&notify).unwrap(), &prefix).unwrap_err();
        assert!(
            err.contains(&format!("sla.teams.dach-sales.notify.secret: {team_arn}")),
            "{err}"
        );
    }

    #[test]
    fn crm_replay_rejects_a_bad_max_and_unknown_flags() {
        assert!(replay_args(&["leadflow", "crm", "replay", "--max", "-1"]).is_err());
        assert!(replay_args(&["leadflow", "crm", "replay", "--max", "all"]).is_err());
        assert!(replay_args(&["leadflow", "crm", "replay", "--force"]).is_err());
        assert!(replay_args(&["leadflow", "crm"]).is_err());
    }
}
