//! `leadflow sla tick --at T` runs one SLA tick as if the schedule fired at `T` (the same code
//! as the sla-tick function); `leadflow sla due [--until T]` lists the leads whose next step
//! is due by `T` (default: now), with the step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_domain::ladder::{self, Due};
use leadflow_domain::ports::{ConfigStore, LeadStore, SlaDueIndex, SLA_SHARDS};
use leadflow_lambda::active_config::ActiveConfig;
use sla_tick::{SlaTick, TickSettings};

use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum SlaAction {
    /// Runs one tick at a chosen time: takes every step due by then.
    Tick {
        /// The tick's time (RFC 3339, e.g. 2026-12-04T09:00:00Z).
        #[arg(long)]
        at: DateTime<Utc>,
        /// The stack's event bus (default: EVENT_BUS_NAME, else the dev stack's).
        #[arg(long)]
        bus: Option<String>,
    },
    /// Lists the leads whose next SLA step is due by a time.
    Due {
        /// Default: now.
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
}

pub async fn run(cli: &Cli, action: &SlaAction) -> Result<(), String> {
    let (store, sdk, dev) = crate::connect(cli).await?;
    match action {
        SlaAction::Tick { at, bus } => {
            let bus = bus
                .clone()
                .or_else(|| {
                    std::env::var("EVENT_BUS_NAME")
                        .ok()
                        .filter(|b| !b.is_empty())
                })
                .or_else(|| dev.as_ref().and_then(|d| d.bus.clone()))
                .ok_or("no event bus: pass --bus, set EVENT_BUS_NAME, or run `cargo dev`")?;
            let publisher = EventBridgePublisher::new(
                leadflow_aws::aws_sdk_eventbridge::Client::new(&sdk),
                bus,
            );
            // The configuration as active now, read afresh.
            let config = ActiveConfig::new(store.clone(), Duration::ZERO);
            let tick = SlaTick::new(store, publisher, config, TickSettings::DEFAULT);
            let report = tick.run_at(*at).await.map_err(|e| e.to_string())?;
            println!("tick at {at}: {report}");
        }
        SlaAction::Due { until } => {
            let until = until.unwrap_or_else(Utc::now);
            let config = store
                .active()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no configuration has been pushed yet (leadflow config push)")?;
            let config = leadflow_domain::config::LeadflowConfig::parse(&config.yaml)
                .map_err(|e| e.to_string())?;
            let mut count = 0;
            for shard in 0..SLA_SHARDS {
                let mut cursor = None;
                loop {
                    let (page, next) = store
                        .due_leads(shard, until, 100, cursor.as_deref())
                        .await
                        .map_err(|e| e.to_string())?;
                    for d in page {
                        let Some(lead) = store.get(d.lead_id).await.map_err(|e| e.to_string())?
                        else {
                            continue;
                        };
                        let step = match ladder::due(&lead, &config.sla, until, |_| false) {
                            Due::Step { step, action, .. } => {
                                format!("step {step}: {}", serde_json::json!(action))
                            }
                            Due::Stop => "stops (accepted or moved on)".into(),
                            Due::Nothing => "not due".into(),
                        };
                        let who = lead.assignment.as_ref().map_or("-", |a| a.assignee_id());
                        println!(
                            "{}  {}  {who:<12}  {step}",
                            d.due.format("%Y-%m-%d %H:%M:%S UTC"),
                            d.lead_id
                        );
                        count += 1;
                    }
                    match next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
            println!("{count} due by {until}");
        }
    }
    Ok(())
}
