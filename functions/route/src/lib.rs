//! Routing: on `LeadQualified`, the active configuration's plan for the lead (first matching
//! rule's pool, else the default pool: never a dropped lead) is carried out: a partner pool
//! offers the lead to the partner, a staging pool queues it for its manager (hot leads skip the
//! queue), and otherwise the members take turns by weight, skipping owners on leave, at their
//! daily cap, or not covering the lead (docs/domain.md, "Routing"). The decisions are the
//! domain's (`RoutingConfig::plan`, `RoutingPlan::candidate`, `routing::decide`); this function
//! takes the turns and caps, which are shared state.
//!
//! A lead that turns MQL on a tracked event is routed by score-event within the same
//! invocation (`score_event::QualifyAndRoute`, [`Route::route_read`]); its `LeadQualified` still
//! reaches this function, which finds it routed and does nothing. Leads qualified on capture
//! are routed here.
//!
//! Turns come from an atomic counter per pool, so shares are exact under any concurrency. The
//! assignment is written under the lead's version and only if the lead has none, so a
//! redelivered `LeadQualified` assigns nothing twice. `LeadRouted` carries the assignment with
//! the rule, the config version and the SLA deadline.
//!
//! **Waiting instead of failing.** With no routing configuration, or nobody able to take the
//! lead today, the lead is parked ([`RoutingWait`]): the wait is stored as its own item beside
//! the lead, listed by its `until` in the table's `gsi2` (partition `ROUTEWAIT`), and sla-tick,
//! which reads that index every minute, routes the lead again when the wait is due
//! ([`route_lead`] serves both). The timeline tells the wait once, with the next try, and a
//! metric line feeds the `LeadsWaitingForRouting` alarm. Why not SQS retries: they burn the
//! receive count and reach the DLQ within minutes, and a visibility timeout cannot outlast a
//! night. The lead cannot be lost: its message is acknowledged only after the wait is stored
//! (a failed write fails the message, which SQS delivers again), and a stored wait stays in
//! the index until a try finds the lead routed or no longer waiting.

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::ports::{
    Availability, ConfigStore, EventPublisher, LeadStore, Outbox, RoutingState, RoutingWaits,
    ScoreStore,
};
use leadflow_domain::routing::{self, RouteLater, Routing, RoutingFacts, RoutingWait, Target};
use leadflow_domain::{Decision, Lead, LeadEvent, LeadId};
use leadflow_lambda::active_config::{ActiveConfig, ActiveConfigError, LoadedConfig};
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{update, update_read};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{lead_of, leadflow_event, RecordError};
use leadflow_lambda::turns::{away_today, settle_turn, take_turn};
use leadflow_lambda::wiring::Backend;

pub struct Route<S, P> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
}

impl Route<DynamoStore, EventBridgePublisher> {
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        Ok(Self::new(b.store, b.publisher, b.config))
    }
}

impl<S, P> SqsFunction for Route<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore + RoutingState + Availability + RoutingWaits,
    P: EventPublisher,
{
    async fn record(&self, message: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        let event = leadflow_event(message.body.as_deref().unwrap_or_default())?;
        match event.event {
            LeadEvent::LeadQualified { .. } => self.route(event.lead_id, now).await.map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// What became of a lead that routing looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Assigned now.
    Assigned,
    /// Nothing to do: routed before, or moved on meanwhile.
    NotAwaiting,
    /// Parked until `wait.until`.
    Waits(RoutingWait),
}

impl<S, P> Route<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore + RoutingState + Availability + RoutingWaits,
    P: EventPublisher,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }

    pub async fn route(&self, lead_id: LeadId, now: DateTime<Utc>) -> Result<Routed, RecordError> {
        let lead = lead_of(&self.store, lead_id).await?;
        self.route_read(lead, now).await
    }

    /// Routes a lead already read (as stored, with its version): qualify hands over the lead it
    /// has just written, in the same invocation.
    pub async fn route_read(&self, lead: Lead, now: DateTime<Utc>) -> Result<Routed, RecordError> {
        if !lead.awaits_routing() {
            // Routed before (a redelivery), or sales/marketing moved it on meanwhile.
            return Ok(Routed::NotAwaiting);
        }
        let loaded = match self.config.get().await {
            Ok(loaded) => Some(loaded),
            // Nothing to route by: the lead waits for a push rather than for the DLQ.
            Err(ActiveConfigError::NoneActive | ActiveConfigError::Invalid { .. }) => None,
            Err(e @ ActiveConfigError::Store(_)) => return Err(RecordError::retryable(e)),
        };
        route_lead(&self.store, &self.publisher, loaded.as_deref(), lead, now).await
    }
}

/// Routes `lead` by `loaded` (none: no usable configuration) at `now`, or parks it when routing
/// must wait (see the module's comment). Used by route and by sla-tick for parked leads.
pub async fn route_lead<S, P>(
    store: &S,
    publisher: &P,
    loaded: Option<&LoadedConfig>,
    lead: Lead,
    now: DateTime<Utc>,
) -> Result<Routed, RecordError>
where
    S: LeadStore + ScoreStore + Outbox + RoutingState + Availability + RoutingWaits,
    P: EventPublisher,
{
    let lead_id = lead.id;
    if !lead.awaits_routing() {
        return Ok(Routed::NotAwaiting);
    }
    let Some((loaded, routing)) = loaded.and_then(|l| l.config.routing.as_ref().map(|r| (l, r)))
    else {
        return park(store, lead_id, RouteLater::no_routing_config(now), now).await;
    };
    let state = store
        .score(lead_id)
        .await?
        .map(|r| r.state)
        .unwrap_or_default();
    let interests = state.interests(&loaded.config.scoring, now);
    let mut excluded = away_today(store, now).await?;
    excluded.extend(lead.passed_over());
    let plan = routing.plan(&RoutingFacts::of(&lead, &interests, &excluded));
    let picked = match plan.target {
        Target::Members { .. } => {
            take_turn(
                store,
                &plan,
                &RoutingFacts::of(&lead, &interests, &excluded),
                now,
            )
            .await?
        }
        _ => None,
    };
    let planned_pool = plan.pool.id.clone();
    let mut first_plan = Some(plan);
    let result = update_read(store, lead, now, |mut lead| {
        if !lead.awaits_routing() {
            return Ok::<_, std::convert::Infallible>(Decision::Keep(None));
        }
        // The first decision is on the lead planned for; after a lost race the lead is
        // planned for again, and the owner whose turn was taken stands as long as the plan
        // keeps the pool.
        let plan = first_plan
            .take()
            .unwrap_or_else(|| routing.plan(&RoutingFacts::of(&lead, &interests, &excluded)));
        let picked = picked.filter(|_| plan.pool.id == planned_pool);
        Ok(
            match routing::decide(&plan, picked, &loaded.config.sla, loaded.version, now) {
                Routing::Assign(assignment) => {
                    let change = lead.assign(*assignment, now);
                    Decision::store(lead, change, None)
                }
                Routing::Later(later) => Decision::Keep(Some(later)),
            },
        )
    })
    .await;
    // A slot taken for an owner who did not get the lead after all (someone else did, the
    // lead waits, or the write failed) is given back.
    settle_turn(store, picked, &result, now).await?;
    let updated = result?;
    if let Some(later) = updated.outcome {
        return park(store, lead_id, later, now).await;
    }
    let Some(a) = updated.stored.as_ref().and_then(|l| l.assignment.as_ref()) else {
        return Ok(Routed::NotAwaiting);
    };
    tracing::info!(lead_id = %lead_id, pool = %a.pool, "lead routed");
    deliver(store, publisher, &updated.events).await;
    Ok(Routed::Assigned)
}

/// Parks the lead until `later.until`: tells the wait on its timeline when it begins (not on
/// every try), then stores it. A failed write is an error, so the try is repeated.
async fn park<S>(
    store: &S,
    lead_id: LeadId,
    later: RouteLater,
    now: DateTime<Utc>,
) -> Result<Routed, RecordError>
where
    S: LeadStore + RoutingWaits,
{
    let previous = store.routing_wait(lead_id).await?;
    let (wait, begins) = RoutingWait::after(previous.as_ref(), lead_id, later, now);
    if begins {
        let told = update(store, lead_id, now, |mut lead| {
            Ok::<_, std::convert::Infallible>(if lead.awaits_routing() {
                let change = lead.wait_for_routing(&wait, now);
                Decision::store(lead, change, true)
            } else {
                Decision::Keep(false)
            })
        })
        .await?;
        if !told.outcome {
            return Ok(Routed::NotAwaiting);
        }
    }
    store.park(&wait).await?;
    tracing::warn!(
        lead_id = %lead_id,
        reason = wait.reason.code(),
        until = %wait.until,
        tries = wait.tries,
        "routing waits"
    );
    println!("{}", waiting_metric(&wait, now));
    Ok(Routed::Waits(wait))
}

/// The CloudWatch namespace and metric of parked leads (template.yaml's alarm).
pub const METRIC_NAMESPACE: &str = "leadflow";
pub const WAITING_METRIC: &str = "LeadsWaitingForRouting";

/// One try that parked a lead, as a CloudWatch embedded-metric-format line (Lambda's log lines
/// that carry `_aws` become metrics, no API call needed). Dimension `Table`: the stack's table,
/// which every function knows, so the alarm of each stack counts only its own leads.
pub fn waiting_metric(wait: &RoutingWait, now: DateTime<Utc>) -> String {
    let table = std::env::var("TABLE_NAME").unwrap_or_default();
    serde_json::json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Table"]],
                "Metrics": [{ "Name": WAITING_METRIC, "Unit": "Count" }],
            }],
        },
        "Table": table,
        WAITING_METRIC: 1,
        "reason": wait.reason.code(),
        "lead_id": wait.lead_id.to_string(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_line_is_embedded_metric_format() {
        let at: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let wait = RoutingWait {
            lead_id: LeadId::new_at(at),
            reason: routing::WaitReason::NoRoutingConfig,
            since: at,
            until: at,
            tries: 1,
        };
        let line: serde_json::Value = serde_json::from_str(&waiting_metric(&wait, at)).unwrap();
        let m = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], METRIC_NAMESPACE);
        assert_eq!(m["Metrics"][0]["Name"], WAITING_METRIC);
        assert_eq!(line[WAITING_METRIC], 1);
        assert_eq!(line["_aws"]["Timestamp"], at.timestamp_millis());
        // Every dimension named has a value on the line.
        assert!(line[m["Dimensions"][0][0].as_str().unwrap()].is_string());
        assert_eq!(line["reason"], "no_routing_config");
    }
}
