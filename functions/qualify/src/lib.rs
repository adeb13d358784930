//! Qualification: on `LeadCaptured` and `LeadScored`, decides the lead's stage from the score
//! and the demographic minimum of the active model (DOMAIN.md: MQL = score over the threshold
//! AND the minimum), and keeps score, grade and temperature on the lead.
//!
//! Stages only move forward here (Inquiry/Recycled → Engaged → MQL); a cooling score never
//! demotes a lead. The stage change is written under the lead's version, so of two deliveries
//! (duplicates, out of order) only one can make the transition, and `LeadQualified` is
//! announced exactly once per transition to MQL. A Recycled lead may qualify again.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use leadflow_domain::ports::{
    ConfigStore, EventPublisher, LeadStore, LeadWrite, Outbox, ScoreStore, StoreError,
};
use leadflow_domain::scoring::{FitProfile, ScoreSnapshot};
use leadflow_domain::{
    Actor, EventEnvelope, LeadEvent, LeadId, Qualification, Stage, TimelineEntry,
};
use leadflow_lambda::active_config::ActiveConfig;
use leadflow_lambda::outbox::deliver;
use leadflow_lambda::retry::lost_race;
use leadflow_lambda::sqs::{for_each_record, lead_of, leadflow_event, RecordError};

pub const FUNCTION: &str = "qualify";
pub const IMPLEMENTED: bool = true;
const MAX_ATTEMPTS: usize = 10;

pub struct Qualify<S, P> {
    store: S,
    publisher: P,
    config: ActiveConfig<S>,
}

/// The stage the score earns, from the stage the lead is at; `None` to stay.
pub fn earned_stage(current: Stage, snapshot: &ScoreSnapshot) -> Option<Stage> {
    let target = if snapshot.is_mql() {
        Stage::Mql
    } else if snapshot.is_engaged() {
        Stage::Engaged
    } else {
        return None;
    };
    match (current, target) {
        (Stage::Inquiry | Stage::Engaged | Stage::Recycled, Stage::Mql) => Some(Stage::Mql),
        (Stage::Inquiry | Stage::Recycled, Stage::Engaged) => Some(Stage::Engaged),
        _ => None,
    }
}

fn reason(snapshot: &ScoreSnapshot, to: Stage, config_version: u64) -> String {
    match to {
        Stage::Mql => format!(
            "score {} reached the MQL threshold with grade {:?} and the demographic minimum met (config version {config_version})",
            snapshot.score, snapshot.grade
        ),
        _ => format!("score {} reached the engagement threshold (config version {config_version})", snapshot.score),
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
            LeadEvent::LeadCaptured { .. } | LeadEvent::LeadScored { .. } => {
                self.qualify(event.lead_id, now).await
            }
            _ => Ok(()),
        }
    }

    /// Brings the lead's stage and qualification up to date with its score at `now`.
    pub async fn qualify(&self, lead_id: LeadId, now: DateTime<Utc>) -> Result<(), RecordError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut lead = lead_of(&self.store, lead_id).await?;
            let loaded = self.config.get().await.map_err(RecordError::retryable)?;
            let state = self
                .store
                .score(lead_id)
                .await
                .map_err(RecordError::retryable)?
                .map(|r| r.state)
                .unwrap_or_default();
            let snapshot = state.snapshot(&loaded.config.scoring, &FitProfile::of(&lead), now);
            let qualification = Qualification {
                score: snapshot.score,
                band: snapshot.band,
                grade: snapshot.grade,
                temperature: snapshot.temperature,
                product: snapshot.product.clone(),
                config_version: loaded.version,
                at: now,
            };
            let earned = earned_stage(lead.stage, &snapshot);
            let same_standing = lead.qualification.as_ref().is_some_and(|q| {
                (q.band, q.grade, q.temperature, &q.product, q.config_version)
                    == (
                        qualification.band,
                        qualification.grade,
                        qualification.temperature,
                        &qualification.product,
                        loaded.version,
                    )
            });
            if earned.is_none() && same_standing {
                return Ok(());
            }
            let expected = lead.version;
            let mut timeline = Vec::new();
            let mut events = Vec::new();
            if let Some(to) = earned {
                let from = lead.stage;
                lead.stage = from
                    .transition(to)
                    .map_err(|e| RecordError::Poison(e.to_string()))?;
                let why = reason(&snapshot, to, loaded.version);
                timeline.push(TimelineEntry {
                    at: now,
                    actor: Actor::System,
                    action: "stage_changed".into(),
                    detail: serde_json::json!({
                        "from": from, "to": to, "score": snapshot.score, "grade": snapshot.grade,
                        "config_version": loaded.version, "explanation": snapshot.contributions,
                    }),
                    reason: Some(why.clone()),
                });
                events.push(EventEnvelope::new(
                    lead_id,
                    now,
                    LeadEvent::StageChanged {
                        from,
                        to,
                        actor: Actor::System,
                        reason: Some(why.clone()),
                    },
                ));
                if to == Stage::Mql {
                    events.push(EventEnvelope::new(
                        lead_id,
                        now,
                        LeadEvent::LeadQualified {
                            score: snapshot.score,
                            grade: snapshot.grade,
                            temperature: snapshot.temperature,
                            product: snapshot.product.clone(),
                            config_version: loaded.version,
                            reason: why,
                        },
                    ));
                }
            }
            lead.qualification = Some(qualification);
            lead.updated_at = now;
            lead.version = expected + 1;
            let write = LeadWrite {
                lead,
                expected_version: Some(expected),
                timeline,
                events,
            };
            match self.store.write(&write).await {
                Ok(()) => {
                    if let Some(to) = earned {
                        tracing::info!(lead_id = %lead_id, stage = %to, "lead qualified");
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use leadflow_domain::scoring::{Grade, Points, ScoreBand, Temperature};

    fn snapshot(band: ScoreBand, minimum: bool) -> ScoreSnapshot {
        ScoreSnapshot {
            at: "2026-11-22T12:00:00Z".parse().unwrap(),
            score: Points::ZERO,
            behaviour: Points::ZERO,
            fit: Points::ZERO,
            grade: Grade::B,
            temperature: Temperature::Warm,
            recent_points: Points::ZERO,
            band,
            product: None,
            meets_mql_minimum: minimum,
            contributions: vec![],
            top_events: vec![],
        }
    }

    #[test]
    fn stages_only_move_forward() {
        use ScoreBand::*;
        assert_eq!(
            earned_stage(Stage::Inquiry, &snapshot(Engaged, false)),
            Some(Stage::Engaged)
        );
        assert_eq!(
            earned_stage(Stage::Inquiry, &snapshot(Mql, true)),
            Some(Stage::Mql)
        );
        assert_eq!(
            earned_stage(Stage::Engaged, &snapshot(Mql, true)),
            Some(Stage::Mql)
        );
        assert_eq!(
            earned_stage(Stage::Engaged, &snapshot(Low, true)),
            None,
            "a cooling score never demotes"
        );
        assert_eq!(
            earned_stage(Stage::Mql, &snapshot(Mql, true)),
            None,
            "MQL once"
        );
        assert_eq!(
            earned_stage(Stage::Sal, &snapshot(Mql, true)),
            None,
            "sales owns the lead"
        );
        assert_eq!(earned_stage(Stage::Rejected, &snapshot(Mql, true)), None);
    }

    #[test]
    fn mql_needs_the_demographic_minimum() {
        assert_eq!(
            earned_stage(Stage::Inquiry, &snapshot(ScoreBand::Mql, false)),
            Some(Stage::Engaged)
        );
    }

    #[test]
    fn recycled_leads_qualify_again() {
        assert_eq!(
            earned_stage(Stage::Recycled, &snapshot(ScoreBand::Mql, true)),
            Some(Stage::Mql)
        );
        assert_eq!(
            earned_stage(Stage::Recycled, &snapshot(ScoreBand::Engaged, true)),
            Some(Stage::Engaged)
        );
    }
}
