//! Scheduled (template.yaml: every minute): takes the due steps of the SLA ladders
//! (docs/domain.md, "Handover and SLA"): reminders, escalation, reassignment, the manager's
//! queue, and partner offers that ran out.
//!
//! "Now" is the scheduled event's `time`, never the wall clock, so a tick can be run for any
//! moment (`cargo leadflow sla tick --at …`). The due leads come from the due index (a sparse
//! GSI by due time, in [`SLA_SHARDS`] shards); each step is decided by the domain
//! ([`ladder::due`], [`Lead::take_sla_step`]) and written under the lead's version, so two
//! ticks at once, overlapping ticks or a tick delivered twice take every step once. A tick
//! that runs out of its time budget leaves the rest due for the next tick.
//!
//! A tick also tries again the leads parked by routing whose wait is due (no routing
//! configuration, nobody able to take them that day: see functions/route): each is routed as
//! route would (`route::route_lead`), parked anew, or its wait ended when it no longer waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::assignment::SlaAction;
use leadflow_domain::ladder::{self, Due};
use leadflow_domain::ports::RoutingWaits;
use leadflow_domain::ports::{
    Availability, ConfigStore, EventPublisher, LeadStore, Outbox, RoutingState, ScoreStore,
    SlaDueIndex, StoreError, SLA_SHARDS,
};
use leadflow_domain::routing::{RoutingFacts, RoutingWait, Target};
use leadflow_domain::{Decision, LeadId};
use leadflow_lambda::active_config::{ActiveConfig, ActiveConfigError, LoadedConfig};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{update_read, UpdateError};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::ScheduledFunction;
use leadflow_lambda::turns::{away_today, settle_turn, take_turn};
use leadflow_lambda::wiring::Backend;
use route::{route_lead, Routed};

/// How a tick spends its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickSettings {
    /// Work stops after this long; what is left stays due for the next tick.
    pub budget: Duration,
    /// Due entries read per query.
    pub page: usize,
    /// Leads worked on at once.
    pub concurrency: usize,
}

impl TickSettings {
    pub const DEFAULT: TickSettings = TickSettings {
        budget: Duration::from_secs(40),
        page: 100,
        concurrency: 8,
    };

    /// `SLA_TICK_BUDGET_SECONDS` (default 40, within the function's 60 s timeout).
    pub fn from_env(env: &Env) -> Self {
        let budget = env
            .optional("SLA_TICK_BUDGET_SECONDS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map_or(Self::DEFAULT.budget, Duration::from_secs);
        Self {
            budget,
            ..Self::DEFAULT
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Due entries read.
    pub due: usize,
    /// Steps taken (each once).
    pub steps: usize,
    /// Ladders stopped without a step (the lead was accepted or moved on).
    pub stopped: usize,
    /// Entries with nothing to do (another tick took the step, or it is not due any more).
    pub skipped: usize,
    /// Leads that failed (a store outage): they stay due for the next tick.
    pub failed: usize,
    /// Parked leads routed now.
    pub routed: usize,
    /// Parked leads that wait on (tried, and parked again).
    pub still_waiting: usize,
    /// The time budget ran out: the next tick goes on.
    pub left_for_next_tick: bool,
}

impl std::fmt::Display for TickReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} due, {} steps taken, {} stopped, {} skipped, {} failed",
            self.due, self.steps, self.stopped, self.skipped, self.failed,
        )?;
        if self.routed + self.still_waiting > 0 {
            write!(
                f,
                "; parked leads: {} routed, {} still waiting",
                self.routed, self.still_waiting
            )?;
        }
        write!(
            f,
            "{}",
            if self.left_for_next_tick {
                ", the rest left for the next tick"
            } else {
                ""
            }
        )
    }
}

/// What became of one due entry.
enum Worked {
    Step,
    Stopped,
    Skipped,
}

pub struct SlaTick<S, P> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
    settings: TickSettings,
}

impl SlaTick<DynamoStore, EventBridgePublisher> {
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        Ok(Self::new(
            b.store,
            b.publisher,
            b.config,
            TickSettings::from_env(env),
        ))
    }
}

impl<S, P> ScheduledFunction for SlaTick<S, P>
where
    S: LeadStore
        + ScoreStore
        + Outbox
        + ConfigStore
        + RoutingState
        + Availability
        + SlaDueIndex
        + RoutingWaits,
    P: EventPublisher,
{
    async fn tick(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<String, String> {
        let now = event
            .time
            .ok_or("a scheduled event without a time: sla-tick takes its time from the event")?;
        self.run_at(now)
            .await
            .map(|r| r.to_string())
            .map_err(|e| e.to_string())
    }
}

impl<S, P> SlaTick<S, P>
where
    S: LeadStore
        + ScoreStore
        + Outbox
        + ConfigStore
        + RoutingState
        + Availability
        + SlaDueIndex
        + RoutingWaits,
    P: EventPublisher,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>, settings: TickSettings) -> Self {
        Self {
            store,
            publisher,
            config,
            settings,
        }
    }

    /// One tick at `now`: every step due by then, within the time budget.
    pub async fn run_at(&self, now: DateTime<Utc>) -> Result<TickReport, StoreError> {
        let started = Instant::now();
        let mut report = TickReport::default();
        let in_budget = || started.elapsed() < self.settings.budget;
        let loaded = self.config.get().await;
        // Parked leads first: they have waited longest. Without a usable configuration they
        // are parked again; when the store cannot say (an outage), they stay due.
        match &loaded {
            Ok(l) => {
                self.route_parked(now, Some(l), &mut report, &in_budget)
                    .await?
            }
            Err(ActiveConfigError::NoneActive | ActiveConfigError::Invalid { .. }) => {
                self.route_parked(now, None, &mut report, &in_budget)
                    .await?
            }
            Err(ActiveConfigError::Store(_)) => {}
        }
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                // No configuration, no ladders: nothing can be due.
                tracing::warn!(error = %e, "no usable configuration; no SLA step taken");
                return Ok(self.reported(report, now));
            }
        };
        let away = away_today(&self.store, now).await?;
        // One page of each shard in turn, so a shard with many due leads cannot starve the
        // others when the budget runs out. `None`: the shard has no more pages this tick.
        let mut cursors: Vec<Option<Option<String>>> = vec![Some(None); SLA_SHARDS as usize];
        while cursors.iter().any(Option::is_some) {
            for shard in 0..SLA_SHARDS {
                let Some(cursor) = cursors[shard as usize].clone() else {
                    continue;
                };
                if !in_budget() {
                    report.left_for_next_tick = true;
                    return Ok(self.reported(report, now));
                }
                let (page, next) = self
                    .store
                    .due_leads(shard, now, self.settings.page, cursor.as_deref())
                    .await?;
                let read = page.len();
                report.due += read;
                cursors[shard as usize] = next.map(Some);
                // No new lead is started once the budget is spent: what is left stays due.
                let results: Vec<_> = stream::iter(page)
                    .take_while(|_| std::future::ready(in_budget()))
                    .map(|d| self.work(d.lead_id, now, &loaded, &away))
                    .buffer_unordered(self.settings.concurrency)
                    .collect()
                    .await;
                if results.len() < read {
                    report.left_for_next_tick = true;
                }
                for r in results {
                    match r {
                        Ok(Worked::Step) => report.steps += 1,
                        Ok(Worked::Stopped) => report.stopped += 1,
                        Ok(Worked::Skipped) => report.skipped += 1,
                        Err(e) => {
                            tracing::warn!(error = %e, "an SLA step failed; the lead stays due");
                            report.failed += 1;
                        }
                    }
                }
            }
        }
        Ok(self.reported(report, now))
    }

    /// Tries again every parked lead whose wait is due by `now`, within the budget.
    async fn route_parked(
        &self,
        now: DateTime<Utc>,
        loaded: Option<&LoadedConfig>,
        report: &mut TickReport,
        in_budget: &impl Fn() -> bool,
    ) -> Result<(), StoreError> {
        let mut cursor: Option<String> = None;
        loop {
            if !in_budget() {
                report.left_for_next_tick = true;
                return Ok(());
            }
            let (page, next) = self
                .store
                .waits_due(now, self.settings.page, cursor.as_deref())
                .await?;
            let results: Vec<_> = stream::iter(page)
                // Parked again for later since the index was read.
                .filter(|w| std::future::ready(w.until <= now))
                .take_while(|_| std::future::ready(in_budget()))
                .map(|w| self.try_parked(w, now, loaded))
                .buffer_unordered(self.settings.concurrency)
                .collect()
                .await;
            for r in results {
                match r {
                    Ok(Routed::Assigned) => report.routed += 1,
                    Ok(Routed::Waits(_)) => report.still_waiting += 1,
                    Ok(Routed::NotAwaiting) => report.skipped += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "a parked lead failed; it stays due");
                        report.failed += 1;
                    }
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// One parked lead: routed (its wait ended), parked again, or its wait ended when the lead
    /// no longer waits. The wait is ended only after the lead is routed, so a failure leaves it
    /// due for the next tick.
    async fn try_parked(
        &self,
        wait: RoutingWait,
        now: DateTime<Utc>,
        loaded: Option<&LoadedConfig>,
    ) -> Result<Routed, String> {
        let lead = self
            .store
            .get(wait.lead_id)
            .await
            .map_err(|e| e.to_string())?;
        let routed = match lead {
            Some(lead) => route_lead(&self.store, &self.publisher, loaded, lead, now)
                .await
                .map_err(|e| e.to_string())?,
            None => Routed::NotAwaiting,
        };
        if !matches!(routed, Routed::Waits(_)) {
            self.store
                .end_wait(&wait)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(routed)
    }

    fn reported(&self, report: TickReport, now: DateTime<Utc>) -> TickReport {
        if report != TickReport::default() {
            tracing::info!(report = %report, at = %now, "SLA tick");
        }
        report
    }

    /// The due step of one lead, taken once.
    async fn work(
        &self,
        id: LeadId,
        now: DateTime<Utc>,
        loaded: &LoadedConfig,
        away: &BTreeSet<String>,
    ) -> Result<Worked, UpdateError<std::convert::Infallible>> {
        let Some(lead) = self.store.get(id).await? else {
            return Ok(Worked::Skipped);
        };
        let (sla, Some(routing)) = (&loaded.config.sla, loaded.config.routing.as_ref()) else {
            return Ok(Worked::Skipped);
        };
        let day = now.date_naive();
        let is_away = |owner: &str| {
            away.contains(owner) || routing.owner(owner).is_some_and(|o| o.is_absent(day))
        };
        let (step, action, due) = match ladder::due(&lead, sla, now, is_away) {
            Due::Nothing => return Ok(Worked::Skipped),
            Due::Stop => {
                let stopped = update_read(&self.store, lead, now, |mut l| {
                    Ok(match ladder::due(&l, sla, now, is_away) {
                        Due::Stop => {
                            let change = l.stop_sla(now);
                            Decision::store(l, change, Worked::Stopped)
                        }
                        _ => Decision::Keep(Worked::Skipped),
                    })
                })
                .await?;
                return Ok(stopped.outcome);
            }
            Due::Step { step, action, due } => (step, action, due),
        };
        // A step that takes the lead away needs the next assignee first: the pool's turns
        // are shared state.
        let current = lead
            .assignment
            .as_ref()
            .map(|a| a.assignee_id().to_owned())
            .unwrap_or_default();
        let mut excluded = lead.passed_over();
        excluded.extend(away.iter().cloned());
        excluded.insert(current);
        let interests = match action {
            SlaAction::Reassign | SlaAction::ExpireOffer => self
                .store
                .score(id)
                .await?
                .map(|r| r.state.interests(&loaded.config.scoring, now))
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        let (next, picked) = if action.takes_the_lead() {
            let facts = RoutingFacts::of(&lead, &interests, &excluded);
            let plan = routing.plan(&facts);
            let picked = match plan.target {
                Target::Members { .. } => take_turn(&self.store, &plan, &facts, now).await?,
                _ => None,
            };
            let next = ladder::next_assignment(
                action,
                &lead,
                Some((&plan, picked)),
                routing,
                sla,
                loaded.version,
                now,
            );
            (next, picked)
        } else {
            (None, None)
        };
        let taken = update_read(&self.store, lead, now, |mut l| {
            Ok(
                match l.take_sla_step(step, action, due, now, sla, routing, next.clone()) {
                    Ok(change) => Decision::store(l, change, Worked::Step),
                    // Another tick took it, or the lead was accepted meanwhile.
                    Err(_) => Decision::Keep(Worked::Skipped),
                },
            )
        })
        .await;
        // The slot taken for the next owner is given back unless the step gave them the lead.
        settle_turn(&self.store, picked, &taken, now).await?;
        let taken = taken?;
        if matches!(taken.outcome, Worked::Step) {
            tracing::info!(lead_id = %id, step, action = ?action, "SLA step taken");
        }
        deliver(&self.store, &self.publisher, &taken.events).await;
        Ok(taken.outcome)
    }
}
