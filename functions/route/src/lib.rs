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

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::assignment::AssignedTo;
use leadflow_domain::ports::{
    ConfigStore, EventPublisher, LeadStore, Outbox, RoutingState, ScoreStore,
};
use leadflow_domain::routing::{self, Owner, RoutingError, RoutingFacts, RoutingPlan, Target};
use leadflow_domain::scoring::{Grade, Temperature};
use leadflow_domain::{Decision, Lead, LeadEvent, LeadId};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::{update_read, UpdateError};
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{lead_of, leadflow_event, RecordError};
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
    S: LeadStore + ScoreStore + Outbox + ConfigStore + RoutingState,
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

/// What routing looks at, from the lead and its interests.
fn facts<'a>(lead: &'a Lead, interests: &'a BTreeMap<String, f64>) -> RoutingFacts<'a> {
    let q = lead.qualification.as_ref();
    RoutingFacts {
        lead,
        grade: q.map_or(Grade::C, |q| q.grade),
        temperature: q.map_or(Temperature::Cold, |q| q.temperature),
        interests,
        product: q.and_then(|q| q.product.as_deref()),
    }
}

impl<S, P> Route<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore + RoutingState,
    P: EventPublisher,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }

    /// Whose turn it is: the next member of the plan's turn order who may take the lead and
    /// is under their daily cap (whose slot is then taken). `None` when nobody is.
    async fn pick_owner<'c>(
        &self,
        plan: &RoutingPlan<'c>,
        facts: &RoutingFacts<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<&'c Owner>, RecordError> {
        let day = now.date_naive();
        for _ in 0..plan.turns_to_try() {
            let turn = self.store.next_turn(&plan.pool.id).await?;
            let Some(owner) = plan.candidate(turn, facts, day) else {
                continue;
            };
            if let Some(cap) = owner.daily_cap {
                if !self.store.take_daily_slot(&owner.id, day, cap).await? {
                    continue;
                }
            }
            return Ok(Some(owner));
        }
        Ok(None)
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
        let plan = routing.plan(&facts(&lead, &interests));
        let picked = match plan.target {
            Target::Members { .. } => {
                self.pick_owner(&plan, &facts(&lead, &interests), now)
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
                .unwrap_or_else(|| routing.plan(&facts(&lead, &interests)));
            let picked = picked.filter(|_| plan.pool.id == planned_pool);
            let assignment = routing::assign(&plan, picked, loaded.version, now)?;
            let change = lead.assign(assignment, now);
            Ok::<_, RoutingError>(Decision::store(lead, change, ()))
        })
        .await;
        let assigned = result
            .as_ref()
            .ok()
            .and_then(|u| u.stored.as_ref())
            .and_then(|l| l.assignment.as_ref());
        // A slot taken for an owner who did not get the lead after all is given back.
        if let Some(owner) = picked.filter(|o| o.daily_cap.is_some()) {
            let got_it = assigned.is_some_and(
                |a| matches!(&a.assigned_to, AssignedTo::Owner { id, .. } if *id == owner.id),
            );
            if !got_it {
                self.store
                    .release_daily_slot(&owner.id, now.date_naive())
                    .await?;
            }
        }
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
