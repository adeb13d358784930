//! Who works a lead, and why (docs/domain.md, "Routing"): the decision routing stores on the
//! lead and announces in `LeadRouted`. Its SLA methods (acceptance) are in [`crate::sla`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An owner, a manager or a partner, by their id in the routing config.
pub type Id = String;

/// Who has the lead now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssignedTo {
    /// A sales rep, whose turn it was.
    Owner { id: Id, name: String, email: String },
    /// A manager's queue (a pool that stages leads); the manager assigns by hand.
    ManagerQueue { id: Id, name: String, email: String },
    /// A distribution partner / reseller.
    Partner { id: Id, name: String },
}

/// A routing decision with its why: the rule that matched (none: the default pool), the pool,
/// the config version, and by when the lead must be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub assigned_to: AssignedTo,
    pub pool: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Id>,
    /// A hot lead that skipped the pool's manager queue.
    #[serde(default)]
    pub fast_track: bool,
    pub config_version: u64,
    pub at: DateTime<Utc>,
    pub sla_deadline: DateTime<Utc>,
    /// When the owner accepted the lead (the CRM said `accepted`): the SLA clock stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
}
