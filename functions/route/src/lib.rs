//! Routing: on `LeadQualified`, the active configuration's plan for the lead (first matching
//! rule's pool, else the default pool: never a dropped lead) is carried out: a partner pool
//! offers the lead to the partner, a staging pool queues it for its manager (hot leads skip the
//! queue), and otherwise the members take turns by weight, skipping owners on leave, at their
//! daily cap, or not covering the lead (docs/domain.md, "Routing"). The decisions are the
//! domain's (`RoutingConfig::plan`, `RoutingPlan::candidate`, `routing::assign`); this function
//! takes the turns and caps, which are shared state.
//!
//! Turns come from an atomic counter per pool, so shares are exact under any concurrency. The
//! assignment is written under the lead's version and only if the lead has none, so a
//! redelivered `LeadQualified` assigns nothing twice. `LeadRouted` carries the assignment with
//! the rule, the config version and the SLA deadline.

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::assignment::AssignedTo;
use leadflow_domain::ports::{
    Availability, ConfigStore, EventPublisher, LeadStore, Outbox, RoutingState, ScoreStore,
};
use leadflow_domain::routing::{self, RoutingError, RoutingFacts, Target};
use leadflow_domain::{Decision, LeadEvent, LeadId};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{update_read, UpdateError};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{lead_of, leadflow_event, RecordError};
use leadflow_lambda::turns::{away_today, release_unused, take_turn};
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
    S: LeadStore + ScoreStore + Outbox + ConfigStore + RoutingState + Availability,
    P: EventPublisher,
{
    async fn record(&self, message: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        let event = leadflow_event(message.body.as_deref().unwrap_or_default())?;
        match event.event {
            LeadEvent::LeadQualified { .. } => self.route(event.lead_id, now).await,
            _ => Ok(()),
        }
    }
}

impl<S, P> Route<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore + RoutingState + Availability,
    P: EventPublisher,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }

    pub async fn route(&self, lead_id: LeadId, now: DateTime<Utc>) -> Result<(), RecordError> {
        let lead = lead_of(&self.store, lead_id).await?;
        if !lead.awaits_routing() {
            // Routed before (a redelivery), or sales/marketing moved it on meanwhile.
            return Ok(());
        }
        let loaded = self.config.get().await.map_err(RecordError::retryable)?;
        let Some(routing) = loaded.config.routing.as_ref() else {
            return Err(RecordError::Retryable(
                "the active configuration has no routing section".into(),
            ));
        };
        let state = self
            .store
            .score(lead_id)
            .await?
            .map(|r| r.state)
            .unwrap_or_default();
        let interests = state.interests(&loaded.config.scoring, now);
        let mut excluded = away_today(&self.store, now).await?;
        excluded.extend(lead.passed_over());
        let plan = routing.plan(&RoutingFacts::of(&lead, &interests, &excluded));
        let picked = match plan.target {
            Target::Members { .. } => {
                take_turn(
                    &self.store,
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
        let result = update_read(&self.store, lead, now, |mut lead| {
            if !lead.awaits_routing() {
                return Ok(Decision::Keep(()));
            }
            // The first decision is on the lead planned for; after a lost race the lead is
            // planned for again, and the owner whose turn was taken stands as long as the plan
            // keeps the pool.
            let plan = first_plan
                .take()
                .unwrap_or_else(|| routing.plan(&RoutingFacts::of(&lead, &interests, &excluded)));
            let picked = picked.filter(|_| plan.pool.id == planned_pool);
            let assignment =
                routing::assign(&plan, picked, &loaded.config.sla, loaded.version, now)?;
            let change = lead.assign(assignment, now);
            Ok::<_, RoutingError>(Decision::store(lead, change, ()))
        })
        .await;
        let got_it = result
            .as_ref()
            .ok()
            .and_then(|u| u.stored.as_ref())
            .and_then(|l| l.assignment.as_ref())
            .filter(|a| matches!(a.assigned_to, AssignedTo::Owner { .. }))
            .map_or("", |a| a.assignee_id());
        // A slot taken for an owner who did not get the lead after all is given back.
        release_unused(&self.store, picked, got_it, now).await?;
        let updated = result.map_err(|e| match e {
            // Nobody can take it today: a later delivery may find someone.
            UpdateError::Rejected(e) => RecordError::Retryable(e.to_string()),
            e => e.into(),
        })?;
        if let Some(a) = updated.stored.as_ref().and_then(|l| l.assignment.as_ref()) {
            tracing::info!(lead_id = %lead_id, pool = %a.pool, "lead routed");
        }
        deliver(&self.store, &self.publisher, &updated.events).await;
        Ok(())
    }
}
