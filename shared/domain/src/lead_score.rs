//! What scoring keeps per lead: the engine's state, the last snapshot shown, and the config
//! version that produced it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lead::LeadId;
use crate::scoring::{HalfLife, ScoreSnapshot, ScoreState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadScore {
    pub lead_id: LeadId,
    pub state: ScoreState,
    /// The score as last announced, with its explanation ("why is this lead at 72?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<ScoreSnapshot>,
    /// The configuration version that produced `snapshot`.
    pub config_version: u64,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version of this record.
    pub version: u64,
}

impl LeadScore {
    pub fn new(lead_id: LeadId, at: DateTime<Utc>) -> Self {
        Self {
            lead_id,
            state: ScoreState::default(),
            snapshot: None,
            config_version: 0,
            updated_at: at,
            version: 0,
        }
    }
}

/// A lead's interest in one tag, as a segment lists it: `weight` at `at`, decaying from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMember {
    pub lead_id: LeadId,
    pub weight: f64,
    pub at: DateTime<Utc>,
}

impl SegmentMember {
    /// The interest at `now`: decayed with the model's interest half-life since `at`.
    pub fn weight_at(&self, half_life: HalfLife, now: DateTime<Utc>) -> f64 {
        self.weight * half_life.remaining(now - self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_s_interest_halves_each_half_life_and_never_grows() {
        let at: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        let m = SegmentMember {
            lead_id: LeadId::new_at(at),
            weight: 2.0,
            at,
        };
        let hl = HalfLife::days(30.0).unwrap();
        assert!((m.weight_at(hl, at + chrono::Duration::days(30)) - 1.0).abs() < 1e-12);
        assert!((m.weight_at(hl, at + chrono::Duration::days(60)) - 0.5).abs() < 1e-12);
        assert_eq!(m.weight_at(hl, at - chrono::Duration::days(1)), 2.0);
    }
}
