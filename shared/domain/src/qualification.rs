//! Qualification (docs/domain.md, "Qualification and BANT"): the lead's standing from its score
//! (stage, grade, temperature) and what inside sales learnt (BANT).

use chrono::{DateTime, Utc};

use crate::bant::Bant;
use crate::change::Change;
use crate::events::LeadEvent;
use crate::fields::FieldErrors;
use crate::lead::{Lead, Qualification};
use crate::scoring::ScoreSnapshot;
use crate::stage::Stage;
use crate::timeline::{Actor, TimelineAction, TimelineEntry};

fn reason(score: &ScoreSnapshot, to: Stage, config_version: u64) -> String {
    match to {
        Stage::Mql => format!(
            "score {} reached the MQL threshold with grade {:?} and the demographic minimum met (config version {config_version})",
            score.score, score.grade
        ),
        _ => format!(
            "score {} reached the engagement threshold (config version {config_version})",
            score.score
        ),
    }
}

impl Lead {
    /// Brings the lead's stage and qualification up to date with `score` (computed with
    /// configuration `config_version`) at `now`. A stage the score earned is recorded with
    /// its reason and announced (`StageChanged`, and `LeadQualified` for MQL: once per move to
    /// MQL). `None`: nothing changed worth storing (same stage, band, grade, temperature,
    /// product and configuration).
    pub fn qualify(
        &mut self,
        score: &ScoreSnapshot,
        config_version: u64,
        now: DateTime<Utc>,
    ) -> Option<Change> {
        let qualification = Qualification {
            score: score.score,
            band: score.band,
            grade: score.grade,
            temperature: score.temperature,
            product: score.product.clone(),
            config_version,
            at: now,
        };
        let earned = self.stage.earned(score);
        let same_standing = self.qualification.as_ref().is_some_and(|q| {
            (q.band, q.grade, q.temperature, &q.product, q.config_version)
                == (
                    qualification.band,
                    qualification.grade,
                    qualification.temperature,
                    &qualification.product,
                    config_version,
                )
        });
        if earned.is_none() && same_standing {
            return None;
        }
        let mut change = Change::default();
        if let Some(to) = earned {
            let from = self.stage;
            let why = reason(score, to, config_version);
            change.timeline.push(
                TimelineEntry::system(
                    now,
                    TimelineAction::StageChanged,
                    serde_json::json!({
                        "from": from, "to": to, "score": score.score, "grade": score.grade,
                        "config_version": config_version, "explanation": score.contributions,
                    }),
                )
                .because(why.clone()),
            );
            change.events.push(LeadEvent::StageChanged {
                from,
                to,
                actor: Actor::System,
                reason: Some(why.clone()),
            });
            if to == Stage::Mql {
                change.events.push(LeadEvent::LeadQualified {
                    score: score.score,
                    grade: score.grade,
                    temperature: score.temperature,
                    product: score.product.clone(),
                    config_version,
                    reason: why,
                });
            }
            self.stage = to;
        }
        self.qualification = Some(qualification);
        self.updated_at = now;
        Some(change)
    }

    /// Inside sales records BANT (`PATCH /leads/{id}/qualification`): `patch` is merged over
    /// what was known (see [`Bant::patch`]), by the user it names.
    pub fn record_bant(
        &mut self,
        patch: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Change, FieldErrors> {
        let bant = Bant::patch(self.bant.as_ref(), patch, now)?;
        let entry = TimelineEntry {
            at: now,
            actor: Actor::User(bant.by.clone()),
            action: TimelineAction::BantUpdated,
            detail: serde_json::json!({
                "complete": bant.is_complete(),
                "fields": patch.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            }),
            reason: None,
        };
        self.bant = Some(bant);
        self.updated_at = now;
        Ok(Change::entry(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{LeadId, SubmissionContext};
    use crate::scoring::{Grade, Points, ScoreBand, Temperature};
    use crate::submission::SubmissionRules;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn lead() -> Lead {
        let raw = vec![("email".to_owned(), "a@b.de".to_owned())];
        let s = SubmissionRules::default().validate(&raw).unwrap();
        let t = at("2026-11-22T12:00:00Z");
        Lead::capture(LeadId::new_at(t), s, &SubmissionContext::default(), t).lead
    }

    fn score(band: ScoreBand, temperature: Temperature) -> ScoreSnapshot {
        ScoreSnapshot {
            at: at("2026-11-22T12:00:00Z"),
            score: Points::ZERO,
            behaviour: Points::ZERO,
            fit: Points::ZERO,
            grade: Grade::B,
            temperature,
            recent_points: Points::ZERO,
            band,
            product: None,
            meets_mql_minimum: true,
            contributions: vec![],
            top_events: vec![],
        }
    }

    #[test]
    fn reaching_mql_is_recorded_and_announced_once() {
        let mut lead = lead();
        let now = at("2026-11-22T13:00:00Z");
        let mql = score(ScoreBand::Mql, Temperature::Warm);
        let change = lead.qualify(&mql, 3, now).expect("a change");
        assert_eq!(lead.stage, Stage::Mql);
        assert_eq!(lead.updated_at, now);
        assert_eq!(lead.qualification.as_ref().unwrap().config_version, 3);
        assert_eq!(change.timeline.len(), 1);
        assert_eq!(change.timeline[0].action, TimelineAction::StageChanged);
        assert!(change.timeline[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("MQL threshold"));
        let names: Vec<_> = change.events.iter().map(LeadEvent::name).collect();
        assert_eq!(names, ["StageChanged", "LeadQualified"]);
        assert_eq!(
            lead.qualify(&mql, 3, now),
            None,
            "the same standing stores nothing"
        );
    }

    #[test]
    fn a_new_temperature_is_kept_without_a_stage_change() {
        let mut lead = lead();
        let now = at("2026-11-22T13:00:00Z");
        lead.qualify(&score(ScoreBand::Low, Temperature::Cold), 1, now);
        let change = lead
            .qualify(&score(ScoreBand::Low, Temperature::Warm), 1, now)
            .expect("the standing changed");
        assert!(change.timeline.is_empty() && change.events.is_empty());
        assert_eq!(
            lead.qualification.as_ref().unwrap().temperature,
            Temperature::Warm
        );
        assert_eq!(lead.stage, Stage::Inquiry);
    }

    #[test]
    fn bant_is_recorded_by_its_user() {
        let mut lead = lead();
        let now = at("2026-11-22T13:00:00Z");
        let change = lead
            .record_bant(&serde_json::json!({"need": "a CRM", "by": "ida"}), now)
            .unwrap();
        assert_eq!(change.timeline[0].actor, Actor::User("ida".into()));
        assert_eq!(
            change.timeline[0].detail["fields"],
            serde_json::json!(["by", "need"])
        );
        assert_eq!(lead.bant.as_ref().unwrap().need.as_deref(), Some("a CRM"));
        let errors = lead
            .record_bant(&serde_json::json!({"colour": 1}), now)
            .unwrap_err();
        assert!(errors.contains_key("colour"));
        assert_eq!(lead.bant.as_ref().unwrap().need.as_deref(), Some("a CRM"));
    }
}
