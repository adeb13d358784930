//! `leadflow dlq replay <queue>` (and `leadflow crm replay`, the same for `crm-webhook`): moves
//! the messages parked on a queue's dead-letter queue back to the queue, where its function
//! picks them up again. Every DLQ of template.yaml has an entry in [`DEAD_LETTER_QUEUES`] (a
//! test keeps the two in step). Safe to repeat: a message leaves the DLQ only after it is on
//! the queue, and every consumer is idempotent (score-event by event id, qualify and route by
//! the lead's version and state, crm-webhook by the delivery's webhook id).
//!
//! The queues are `--queue-url` / `--dlq-url`, else `<QUEUE>_QUEUE_URL` / `<QUEUE>_DLQ_URL`
//! (`ROUTE_QUEUE_URL`, `CRM_WEBHOOK_DLQ_URL`, ...), else found by name in the stack `--stack`
//! (CloudFormation names them `<stack>-<LogicalId>-<suffix>`), else those `cargo dev` wrote
//! under `queues` in `.local/dev-stack.json` (found by name in its stack when the file has no
//! such entry).

use std::collections::BTreeMap;

use leadflow_aws::aws_sdk_sqs::Client;
use leadflow_aws::sqs::{peek, redrive};

use crate::{dev_stack, sdk_config, Cli, DevStack};

/// A queue with a dead-letter queue, as template.yaml declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterQueue {
    /// The name on the command line: the consuming function's.
    pub name: &'static str,
    /// Logical ids of the queue and its DLQ.
    pub queue: &'static str,
    pub dlq: &'static str,
    /// What one message is, in the summaries (singular, plural).
    noun: (&'static str, &'static str),
    /// How the summaries name the queue.
    label: &'static str,
}

impl DeadLetterQueue {
    /// `ROUTE`, `CRM_WEBHOOK`: the prefix of its environment variables.
    fn env_prefix(&self) -> String {
        self.name.to_uppercase().replace('-', "_")
    }
}

/// Every queue of the template with a DLQ.
pub const DEAD_LETTER_QUEUES: [DeadLetterQueue; 4] = [
    DeadLetterQueue {
        name: "score-event",
        queue: "ScoreEventQueue",
        dlq: "ScoreEventDLQ",
        noun: ("event", "events"),
        label: "score-event",
    },
    DeadLetterQueue {
        name: "qualify",
        queue: "QualifyQueue",
        dlq: "QualifyDLQ",
        noun: ("event", "events"),
        label: "qualify",
    },
    DeadLetterQueue {
        name: "route",
        queue: "RouteQueue",
        dlq: "RouteDLQ",
        noun: ("event", "events"),
        label: "route",
    },
    DeadLetterQueue {
        name: "crm-webhook",
        queue: "CrmWebhookQueue",
        dlq: "CrmWebhookDLQ",
        noun: ("delivery", "deliveries"),
        label: "CRM webhook",
    },
];

/// The queue called `name` (`route`, `crm-webhook`, or a logical id such as `RouteDLQ`).
pub fn dead_letter_queue(name: &str) -> Result<DeadLetterQueue, String> {
    DEAD_LETTER_QUEUES
        .iter()
        .find(|q| q.name == name || q.queue == name || q.dlq == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<_> = DEAD_LETTER_QUEUES.iter().map(|q| q.name).collect();
            format!(
                "no queue {name:?} has a dead-letter queue; one of: {}",
                names.join(", ")
            )
        })
}

/// The CRM webhook's queue (`crm replay`).
pub const CRM_WEBHOOK: DeadLetterQueue = DEAD_LETTER_QUEUES[3];

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct DlqReplayArgs {
    /// Whose dead letters: score-event, qualify, route or crm-webhook.
    #[arg(value_name = "QUEUE", value_parser = dead_letter_queue_name)]
    pub queue: String,
    #[command(flatten)]
    pub replay: ReplayArgs,
}

fn dead_letter_queue_name(name: &str) -> Result<String, String> {
    dead_letter_queue(name).map(|q| q.name.to_owned())
}

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ReplayArgs {
    /// Moves at most N messages (default: every one on the DLQ).
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
    /// Counts the messages on the DLQ and why they were given up, without moving any.
    #[arg(long)]
    pub dry_run: bool,
    /// URL of the queue (stack output <Queue>Url; default: <QUEUE>_QUEUE_URL such as
    /// CRM_WEBHOOK_QUEUE_URL, or found in the stack).
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// URL of its dead-letter queue (stack output <Queue>DLQUrl; default: <QUEUE>_DLQ_URL such
    /// as ROUTE_DLQ_URL, or found in the stack).
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

fn messages(q: &DeadLetterQueue, n: usize) -> String {
    if n == 1 {
        format!("1 {}", q.noun.0)
    } else {
        format!("{n} {}", q.noun.1)
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
fn summary(
    q: &DeadLetterQueue,
    dry_run: bool,
    count: usize,
    reasons: &BTreeMap<String, usize>,
) -> String {
    if count == 0 {
        return format!("the {} DLQ is empty: nothing to replay", q.label);
    }
    format!(
        "{} {} back to the {} queue (reasons: {})",
        if dry_run { "would move" } else { "moved" },
        messages(q, count),
        q.label,
        reasons_text(reasons)
    )
}

pub async fn run(cli: &Cli, q: &DeadLetterQueue, args: &ReplayArgs) -> Result<(), String> {
    let prefix = q.env_prefix();
    let queue_url = args
        .queue_url
        .clone()
        .or_else(|| env(&format!("{prefix}_QUEUE_URL")));
    let dlq_url = args
        .dlq_url
        .clone()
        .or_else(|| env(&format!("{prefix}_DLQ_URL")));
    // A dry run reads only the DLQ.
    let complete = dlq_url.is_some() && (args.dry_run || queue_url.is_some());
    let dev: Option<DevStack> = if complete || args.stack.is_some() {
        None
    } else {
        Some(dev_stack().ok_or_else(|| {
            format!(
                "no queues: pass --queue-url and --dlq-url (stack outputs {}Url and {}Url), or \
                 --stack NAME, or run `cargo dev` in this workspace",
                q.queue, q.dlq
            )
        })?)
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
        None => find(q.dlq).await.map_err(hint)?,
    };
    if args.dry_run {
        let report = peek(&client, &dlq_url, args.max)
            .await
            .map_err(|e| hint(format!("cannot read the DLQ {dlq_url}: {}", e.0)))?;
        let mut line = summary(q, true, report.messages, &report.reasons);
        if args.max.is_some_and(|m| m > 0 && report.messages == m) {
            line.push_str(" (--max reached; more may be waiting)");
        }
        println!("{line}");
        return Ok(());
    }
    let queue_url = match queue_url {
        Some(url) => url,
        None => find(q.queue).await.map_err(hint)?,
    };
    if queue_url == dlq_url {
        return Err(format!(
            "the queue and the DLQ are the same queue ({queue_url})"
        ));
    }
    let report = redrive(&client, &dlq_url, &queue_url, args.max)
        .await
        .map_err(|e| hint(format!("replay from {dlq_url} to {queue_url}: {}", e.0)))?;
    let mut line = summary(q, false, report.moved, &report.reasons);
    if report.returned == 0 && args.max.is_some_and(|m| m > 0 && report.moved == m) {
        line.push_str(" (--max reached; more may be waiting)");
    }
    println!("{line}");
    if report.returned > 0 {
        println!(
            "left {} on the DLQ: moved earlier in this run, it failed again (or is a duplicate); \
             replay again once the cause is fixed",
            messages(q, report.returned)
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
        assert_eq!(dev.queues[CRM_WEBHOOK.queue].as_deref(), Some("http://q/1"));
        assert_eq!(dev.queues[CRM_WEBHOOK.dlq], None);
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
        let crm = &CRM_WEBHOOK;
        assert_eq!(
            summary(crm, false, 3, &reasons),
            "moved 3 deliveries back to the CRM webhook queue \
             (reasons: 2 × CRM answered 503; 1 × no reason given)"
        );
        assert_eq!(
            summary(crm, true, 1, &BTreeMap::from([("x".to_owned(), 1)])),
            "would move 1 delivery back to the CRM webhook queue (reasons: 1 × x)"
        );
        assert_eq!(
            summary(crm, false, 0, &BTreeMap::new()),
            "the CRM webhook DLQ is empty: nothing to replay"
        );
        let route = dead_letter_queue("route").unwrap();
        assert_eq!(
            summary(
                &route,
                false,
                2,
                &BTreeMap::from([("no reason given".to_owned(), 2)])
            ),
            "moved 2 events back to the route queue (reasons: 2 × no reason given)"
        );
        assert_eq!(route.env_prefix(), "ROUTE");
        assert_eq!(CRM_WEBHOOK.env_prefix(), "CRM_WEBHOOK");
        assert_eq!(dead_letter_queue("RouteDLQ").unwrap(), route);
        let err = dead_letter_queue("outbox").unwrap_err();
        assert!(
            err.contains("score-event, qualify, route, crm-webhook"),
            "{err}"
        );
    }

    /// Every queue of template.yaml with a redrive policy can be replayed, into that queue.
    #[test]
    fn every_dlq_of_the_template_can_be_replayed() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = std::fs::read_to_string(path).unwrap();
        let mut redriven = Vec::new();
        let mut queue: Option<&str> = None;
        for line in template.lines() {
            if let Some(id) = line
                .strip_prefix("  ")
                .filter(|l| !l.starts_with(' '))
                .and_then(|l| l.strip_suffix(':'))
            {
                queue = Some(id);
            }
            if let Some(dlq) = line.trim().strip_prefix("deadLetterTargetArn: !GetAtt ") {
                let dlq = dlq.trim_end_matches(".Arn");
                redriven.push((queue.unwrap().to_owned(), dlq.to_owned()));
            }
        }
        assert!(redriven.len() >= 4, "{redriven:?}");
        for (queue, dlq) in &redriven {
            let q = dead_letter_queue(dlq)
                .unwrap_or_else(|e| panic!("{dlq} (of {queue}) cannot be replayed: {e}"));
            assert_eq!((q.queue, q.dlq), (queue.as_str(), dlq.as_str()));
        }
        assert_eq!(redriven.len(), DEAD_LETTER_QUEUES.len(), "{redriven:?}");
    }
}
