//! Qualification: on `LeadCaptured` and `LeadScored`, brings the lead's stage and standing up
//! to date with its score under the active model ([`Lead::qualify`]: MQL = score over the
//! threshold AND the demographic minimum; see docs/domain.md, "Lifecycle stages").
//!
//! Stages only move forward here, and the change is written under the lead's version, so of two
//! deliveries (duplicates, out of order) only one can make a transition, and `LeadQualified` is
//! announced exactly once per move to MQL.
//!
//! # Qualifying and routing where the score changed
//! score-event does not wait for `LeadScored` to cross the bus: it runs this qualification
//! and then route's ([`Qualify::qualify`] hands over the lead to route) after each lead's
//! scoring, in the same invocation (`score_event::QualifyAndRoute`), so a lead that turns MQL on a tracked
//! event is routed before the invocation ends, and only `LeadRouted` crosses the bus on the way
//! to the CRM (docs/performance.md, "Latency budget"). Every event is still published for
//! subscribers. A redelivered message runs the chain again: qualification changes nothing the
//! second time, and routing still routes a lead that is an MQL without an owner (the first run
//! may have stopped in between), so nothing is skipped and nothing is done twice.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_aws::Clients;
use leadflow_domain::ports::{ConfigStore, EventPublisher, LeadStore, Outbox, ScoreStore};
use leadflow_domain::{Decision, Lead, LeadEvent, LeadId};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::config::{ConfigError, Env};
use leadflow_lambda::lead_update::update;
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::run::SqsFunction;
use leadflow_lambda::sqs::{leadflow_event, RecordError};
use leadflow_lambda::wiring::Backend;

pub struct Qualify<S, P> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
}

impl Qualify<DynamoStore, EventBridgePublisher> {
    pub fn from_env(aws: &Clients, env: &Env) -> Result<Self, ConfigError> {
        let b = Backend::from_env(aws, env)?;
        Ok(Self::new(b.store, b.publisher, b.config))
    }
}

impl<S, P> SqsFunction for Qualify<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
{
    async fn record(&self, message: &SqsMessage, now: DateTime<Utc>) -> Result<(), RecordError> {
        let event = leadflow_event(message.body.as_deref().unwrap_or_default())?;
        match event.event {
            LeadEvent::LeadCaptured { .. } | LeadEvent::LeadScored { .. } => {
                self.qualify(event.lead_id, now).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

impl<S, P> Qualify<S, P>
where
    S: LeadStore + ScoreStore + Outbox + ConfigStore,
    P: EventPublisher,
{
    pub fn new(store: S, publisher: P, config: ActiveConfig<S>) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }

    /// Brings the lead's stage and qualification up to date with its score at `now`. Returns
    /// the lead, as stored, when it awaits routing (an MQL without an owner).
    pub async fn qualify(
        &self,
        lead_id: LeadId,
        now: DateTime<Utc>,
    ) -> Result<Option<Lead>, RecordError> {
        let loaded = self.config.get().await.map_err(RecordError::retryable)?;
        let state = self
            .store
            .score(lead_id)
            .await?
            .map(|r| r.state)
            .unwrap_or_default();
        let updated = update(&self.store, lead_id, now, |mut lead: Lead| {
            let score = state.snapshot(&loaded.config.scoring, &lead.fit_profile(), now);
            let before = lead.stage;
            Ok::<_, Infallible>(match lead.qualify(&score, loaded.version, now) {
                Some(change) => {
                    let moved = (lead.stage != before).then_some(lead.stage);
                    Decision::store(lead, change, (moved, None))
                }
                // Unchanged, but maybe still to route (an earlier run stopped before routing).
                None => Decision::Keep((None, lead.awaits_routing().then_some(lead))),
            })
        })
        .await?;
        let (moved, unchanged) = updated.outcome;
        if let Some(stage) = moved {
            tracing::info!(lead_id = %lead_id, stage = %stage, "lead qualified");
        }
        deliver(&self.store, &self.publisher, &updated.events).await;
        Ok(updated
            .stored
            .or(unchanged)
            .filter(|lead| lead.awaits_routing()))
    }
}
