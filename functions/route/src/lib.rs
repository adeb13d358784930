//! Routing: on `LeadQualified`, the first matching rule of the active configuration picks a
//! pool (else the default pool: never a dropped lead); inside the pool, weighted round-robin
//! picks the owner, skipping owners on leave, at their daily cap, or whose territories and
//! products do not cover the lead. Hot leads skip a pool's
//! manager queue (fast track); partner pools offer the lead to the partner.
//!
//! Turns come from an atomic counter per pool, so shares are exact under any concurrency. The
//! assignment is written under the lead's version and only if the lead has none, so a
//! redelivered `LeadQualified` assigns nothing twice. `LeadRouted` carries the assignment with
//! the rule, the config version and the SLA deadline.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Duration, Utc};
use leadflow_domain::ports::{
    ConfigStore, EventPublisher, LeadStore, LeadWrite, Outbox, RoutingState, ScoreStore, StoreError,
};
use leadflow_domain::routing::{AssignedTo, Assignment, Owner, Pool, RoutingConfig, RoutingFacts};
use leadflow_domain::scoring::{Grade, Temperature};
use leadflow_domain::{Actor, EventEnvelope, LeadEvent, LeadId, Stage, TimelineEntry};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::retry::lost_race;
use leadflow_lambda::sqs::{for_each_record, lead_of, leadflow_event, RecordError};

pub const FUNCTION: &str = "route";
pub const IMPLEMENTED: bool = true;
const MAX_ATTEMPTS: usize = 10;

pub struct Route<S, P> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
}

fn owner_target(kind: fn(String, String, String) -> AssignedTo, o: &Owner) -> AssignedTo {
    kind(o.id.clone(), o.name.clone(), o.email.clone())
}

fn as_owner(id: String, name: String, email: String) -> AssignedTo {
    AssignedTo::Owner { id, name, email }
}

fn as_queue(id: String, name: String, email: String) -> AssignedTo {
    AssignedTo::ManagerQueue { id, name, email }
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

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        for_each_record(event, |m| async move {
            self.record(m.body.as_deref().unwrap_or_default(), Utc::now())
                .await
        })
        .await
    }

    pub async fn record(&self, body: &str, now: DateTime<Utc>) -> Result<(), RecordError> {
        let event = leadflow_event(body)?;
        match event.event {
            LeadEvent::LeadQualified { .. } => self.route(event.lead_id, now).await,
            _ => Ok(()),
        }
    }

    /// Whose turn it is in the pool: the next owner of the turn order who is present and under
    /// the daily cap (whose slot is then taken). `None` when nobody is.
    async fn pick_owner<'c>(
        &self,
        routing: &'c RoutingConfig,
        pool: &Pool,
        facts: &RoutingFacts<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<&'c Owner>, RecordError> {
        let order = routing.sequence(pool);
        let day = now.date_naive();
        for _ in 0..order.len() * 2 {
            let turn = self
                .store
                .next_turn(&pool.id)
                .await
                .map_err(RecordError::retryable)?;
            let Some(owner) =
                routing.owner(&order[(turn.saturating_sub(1) as usize) % order.len()])
            else {
                continue;
            };
            if owner.is_absent(day) || !owner.covers(facts) {
                continue;
            }
            if let Some(cap) = owner.daily_cap {
                if !self
                    .store
                    .take_daily_slot(&owner.id, day, cap)
                    .await
                    .map_err(RecordError::retryable)?
                {
                    continue;
                }
            }
            return Ok(Some(owner));
        }
        Ok(None)
    }

    pub async fn route(&self, lead_id: LeadId, now: DateTime<Utc>) -> Result<(), RecordError> {
        let loaded = self.config.get().await.map_err(RecordError::retryable)?;
        let Some(routing) = loaded.config.routing.as_ref() else {
            return Err(RecordError::Retryable(
                "the active configuration has no routing section".into(),
            ));
        };
        let mut taken_slot: Option<String> = None;
        for _ in 0..MAX_ATTEMPTS {
            let mut lead = lead_of(&self.store, lead_id).await?;
            if lead.assignment.is_some() || lead.stage != Stage::Mql {
                // Routed before (a redelivery), or sales/marketing moved it on meanwhile.
                if let Some(owner) = taken_slot.take() {
                    self.store
                        .release_daily_slot(&owner, now.date_naive())
                        .await
                        .map_err(RecordError::retryable)?;
                }
                return Ok(());
            }
            let (grade, temperature) = lead
                .qualification
                .as_ref()
                .map_or((Grade::C, Temperature::Cold), |q| (q.grade, q.temperature));
            let state = self
                .store
                .score(lead_id)
                .await
                .map_err(RecordError::retryable)?
                .map(|r| r.state)
                .unwrap_or_default();
            let interests = state.interests(&loaded.config.scoring, now);
            let facts = RoutingFacts {
                lead: &lead,
                grade,
                temperature,
                interests: &interests,
                product: lead
                    .qualification
                    .as_ref()
                    .and_then(|q| q.product.as_deref()),
            };
            let (rule, pool) = routing.pool_for(&facts);
            let hot = temperature == Temperature::Hot;
            let staging = pool.staging_manager.as_ref().and_then(|m| routing.owner(m));
            let assigned_to =
                if let Some(partner) = pool.partner.as_ref().and_then(|p| routing.partner(p)) {
                    AssignedTo::Partner {
                        id: partner.id.clone(),
                        name: partner.name.clone(),
                    }
                } else if let (Some(manager), false) = (staging, hot) {
                    owner_target(as_queue, manager)
                } else {
                    let owner = match &taken_slot {
                        Some(id) => routing.owner(id),
                        None => self.pick_owner(routing, pool, &facts, now).await?,
                    };
                    match owner {
                        Some(o) => {
                            if o.daily_cap.is_some() {
                                taken_slot = Some(o.id.clone());
                            }
                            owner_target(as_owner, o)
                        }
                        // Everyone away or full: the pool's manager (or the first member's) decides.
                        None => match staging.or_else(|| {
                            pool.members
                                .first()
                                .and_then(|m| routing.owner(m))
                                .and_then(|o| o.manager.as_ref())
                                .and_then(|m| routing.owner(m))
                        }) {
                            Some(manager) => owner_target(as_queue, manager),
                            None => {
                                return Err(RecordError::Retryable(format!(
                                    "nobody in pool {} can take a lead today",
                                    pool.id
                                )))
                            }
                        },
                    }
                };
            let assignment = Assignment {
                assigned_to,
                pool: pool.id.clone(),
                rule: rule.map(|r| r.id.clone()),
                fast_track: hot && staging.is_some(),
                config_version: loaded.version,
                at: now,
                sla_deadline: now + Duration::hours(i64::from(pool.sla.accept_within_hours)),
                accepted_at: None,
            };
            let expected = lead.version;
            let timeline = TimelineEntry {
                at: now,
                actor: Actor::System,
                action: "routed".into(),
                detail: serde_json::json!({ "assignment": assignment }),
                reason: Some(match &assignment.rule {
                    Some(r) => format!("rule {r} matched (config version {})", loaded.version),
                    None => format!(
                        "no rule matched: default pool (config version {})",
                        loaded.version
                    ),
                }),
            };
            let event = EventEnvelope::new(
                lead_id,
                now,
                LeadEvent::LeadRouted {
                    assignment: assignment.clone(),
                },
            );
            lead.assignment = Some(assignment);
            lead.updated_at = now;
            lead.version = expected + 1;
            let write = LeadWrite {
                lead,
                expected_version: Some(expected),
                timeline: vec![timeline],
                events: vec![event],
            };
            match self.store.write(&write).await {
                Ok(()) => {
                    tracing::info!(lead_id = %lead_id, pool = %write.lead.assignment.as_ref().map_or("", |a| a.pool.as_str()), "lead routed");
                    deliver(&self.store, &self.publisher, &write.events).await;
                    return Ok(());
                }
                Err(StoreError::VersionConflict { .. } | StoreError::Busy) => lost_race().await,
                Err(e) => return Err(RecordError::retryable(e)),
            }
        }
        Err(RecordError::Retryable(format!(
            "lead {lead_id} is changing concurrently; retried later"
        )))
    }
}
