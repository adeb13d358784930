//! `leadflow crm replay`: moves the deliveries parked on the CRM webhook's dead-letter queue
//! (`CrmWebhookDLQ`) back to its queue (`CrmWebhookQueue`), where `crm-webhook` picks them up
//! again. Safe to repeat: a message leaves the DLQ only after it is on the queue, and the
//! consumer is idempotent (it reuses the delivery's webhook id).
//!
//! The queues are `--queue-url` / `--dlq-url`, else `CRM_WEBHOOK_QUEUE_URL` /
//! `CRM_WEBHOOK_DLQ_URL`, else found by name in the stack `--stack` (CloudFormation names them
//! `<stack>-<LogicalId>-<suffix>`), else those `cargo dev` wrote under `queues` in
//! `.local/dev-stack.json` (found by name in its stack when an older file has no such entry).

use std::collections::BTreeMap;

use leadflow_aws::aws_sdk_sqs::Client;
use leadflow_aws::sqs::{peek, redrive};

use crate::{dev_stack, sdk_config, Cli, DevStack};

/// The template's logical ids of the CRM webhook's queue and its DLQ.
const QUEUE: &str = "CrmWebhookQueue";
const DLQ: &str = "CrmWebhookDLQ";

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ReplayArgs {
    /// Moves at most N deliveries (default: every one on the DLQ).
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
    /// Counts the deliveries on the DLQ and why they were given up, without moving any.
    #[arg(long)]
    pub dry_run: bool,
    /// URL of the CRM webhook queue (stack output CrmWebhookQueueUrl; default:
    /// CRM_WEBHOOK_QUEUE_URL, or found in the stack).
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// URL of its dead-letter queue (stack output CrmWebhookDLQUrl; default: CRM_WEBHOOK_DLQ_URL,
    /// or found in the stack).
    #[arg(long, value_name = "URL")]
    pub dlq_url: Option<String>,
    /// The stack whose queues to use, found by name (default: the one `cargo dev` is running).
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The URL of the queue `<stack>-<logical_id>-…`.
async fn find_queue_url(client: &Client, stack: &str, logical_id: &str) -> Result<String, String> {
    let prefix = format!("{stack}-{logical_id}-");
    let out = client
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot list the queues of stack {stack}: {}",
                leadflow_domain::ports::error_chain(&e)
            )
        })?;
    match out.queue_urls() {
        [url] => Ok(url.clone()),
        [] => Err(format!(
            "stack {stack} has no queue named {prefix}… in this account and region"
        )),
        urls => Err(format!(
            "more than one queue is named {prefix}…: {}",
            urls.join(", ")
        )),
    }
}

fn deliveries(n: usize) -> String {
    if n == 1 {
        "1 delivery".to_owned()
    } else {
        format!("{n} deliveries")
    }
}

/// `2 × CRM answered 503; 1 × no reason given`, most frequent first.
fn reasons_text(reasons: &BTreeMap<String, usize>) -> String {
    let mut sorted: Vec<_> = reasons.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(reason, n)| format!("{n} × {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a replay (or a dry run) prints.
fn summary(dry_run: bool, count: usize, reasons: &BTreeMap<String, usize>) -> String {
    if count == 0 {
        return "the CRM webhook DLQ is empty: nothing to replay".to_owned();
    }
    format!(
        "{} {} back to the CRM webhook queue (reasons: {})",
        if dry_run { "would move" } else { "moved" },
        deliveries(count),
        reasons_text(reasons)
    )
}

pub async fn run(cli: &Cli, args: &ReplayArgs) -> Result<(), String> {
    let queue_url = args
        .queue_url
        .clone()
        .or_else(|| env("CRM_WEBHOOK_QUEUE_URL"));
    let dlq_url = args.dlq_url.clone().or_else(|| env("CRM_WEBHOOK_DLQ_URL"));
    // A dry run reads only the DLQ.
    let complete = dlq_url.is_some() && (args.dry_run || queue_url.is_some());
    let dev: Option<DevStack> = if complete || args.stack.is_some() {
        None
    } else {
        Some(dev_stack().ok_or(
            "no queues: pass --queue-url and --dlq-url (stack outputs CrmWebhookQueueUrl and \
             CrmWebhookDLQUrl), or --stack NAME, or run `cargo dev` in this workspace",
        )?)
    };
    let stack = args
        .stack
        .clone()
        .or_else(|| dev.as_ref().and_then(|d| d.stack_name.clone()));
    // Errors against the dev stack are most likely a `cargo dev` that is not running any more.
    let hint = |e: String| match &dev {
        Some(d) => format!(
            "{e}\n(the queues are those of the dev stack at {}, from .local/dev-stack.json: is \
             `cargo dev` still running?)",
            d.endpoint
        ),
        None => e,
    };
    let client = Client::new(&sdk_config(cli, dev.as_ref()).await);
    let find = |logical_id: &'static str| {
        let client = &client;
        let stack = stack.as_deref();
        // The dev stack's own record of its queues (`dev` is None when `--stack` is given).
        let recorded = dev
            .as_ref()
            .and_then(|d| d.queues.get(logical_id).cloned().flatten());
        async move {
            if let Some(url) = recorded.filter(|u| !u.is_empty()) {
                return Ok(url);
            }
            let stack =
                stack.ok_or(".local/dev-stack.json names no stack; run `cargo dev` again")?;
            find_queue_url(client, stack, logical_id).await
        }
    };
    let dlq_url = match dlq_url {
        Some(url) => url,
        None => find(DLQ).await.map_err(hint)?,
    };
    if args.dry_run {
        let report = peek(&client, &dlq_url, args.max)
            .await
            .map_err(|e| hint(format!("cannot read the DLQ {dlq_url}: {}", e.0)))?;
        let mut line = summary(true, report.messages, &report.reasons);
        if args.max.is_some_and(|m| m > 0 && report.messages == m) {
            line.push_str(" (--max reached; more may be waiting)");
        }
        println!("{line}");
        return Ok(());
    }
    let queue_url = match queue_url {
        Some(url) => url,
        None => find(QUEUE).await.map_err(hint)?,
    };
    if queue_url == dlq_url {
        return Err(format!(
            "the queue and the DLQ are the same queue ({queue_url})"
        ));
    }
    let report = redrive(&client, &dlq_url, &queue_url, args.max)
        .await
        .map_err(|e| hint(format!("replay from {dlq_url} to {queue_url}: {}", e.0)))?;
    let mut line = summary(false, report.moved, &report.reasons);
    if report.returned == 0 && args.max.is_some_and(|m| m > 0 && report.moved == m) {
        line.push_str(" (--max reached; more may be waiting)");
    }
    println!("{line}");
    if report.returned > 0 {
        println!(
            "left {} on the DLQ: moved earlier in this run, it failed again (or is a duplicate); \
             replay again once the CRM accepts deliveries",
            deliveries(report.returned)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_stack_file_names_the_queues_by_logical_id() {
        let dev: DevStack = serde_json::from_str(
            r#"{"endpoint": "http://127.0.0.1:5000", "region": "us-east-1", "table": "t",
                "stack_name": "leadflow-dev",
                "queues": {"CrmWebhookQueue": "http://q/1", "CrmWebhookDLQ": null}}"#,
        )
        .unwrap();
        assert_eq!(dev.queues[QUEUE].as_deref(), Some("http://q/1"));
        assert_eq!(dev.queues[DLQ], None);
        // A file from before `queues` still reads.
        let old: DevStack = serde_json::from_str(
            r#"{"endpoint": "e", "region": "r", "table": "t", "stack_name": "s"}"#,
        )
        .unwrap();
        assert!(old.queues.is_empty());
    }

    #[test]
    fn summary_names_count_and_reasons_most_frequent_first() {
        let reasons = BTreeMap::from([
            ("CRM answered 503".to_owned(), 2),
            ("no reason given".to_owned(), 1),
        ]);
        assert_eq!(
            summary(false, 3, &reasons),
            "moved 3 deliveries back to the CRM webhook queue \
             (reasons: 2 × CRM answered 503; 1 × no reason given)"
        );
        assert_eq!(
            summary(true, 1, &BTreeMap::from([("x".to_owned(), 1)])),
            "would move 1 delivery back to the CRM webhook queue (reasons: 1 × x)"
        );
        assert_eq!(
            summary(false, 0, &BTreeMap::new()),
            "the CRM webhook DLQ is empty: nothing to replay"
        );
    }
}
