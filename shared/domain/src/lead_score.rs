//! What scoring keeps per lead: the engine's state, the last snapshot shown, and the config
//! version that produced it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lead::LeadId;
use crate::scoring::{ScoreSnapshot, ScoreState};

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
