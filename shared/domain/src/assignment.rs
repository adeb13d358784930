//! Who works a lead, and why (docs/domain.md, "Routing"): the decision routing stores on the
//! lead and announces in `LeadRouted`, with what became of it (the SLA facts: each step of
//! the ladder, delivery, acceptance and the waits). The decisions about it are in
//! [`crate::sla`] and [`crate::ladder`].

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
    /// The SLA ladder's progress, when the pool's team has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaTrack>,
    /// When the CRM took the delivery: the wait before it is the system's, after it the
    /// person's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// How the assignment ended (or that it was accepted), with the waits measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AssignmentOutcome>,
}

impl Assignment {
    /// The owner, manager or partner the lead is with.
    pub fn assignee_id(&self) -> &str {
        match &self.assigned_to {
            AssignedTo::Owner { id, .. }
            | AssignedTo::ManagerQueue { id, .. }
            | AssignedTo::Partner { id, .. } => id,
        }
    }

    /// An offer to a partner, not accepted yet: the partner sees no contact data.
    pub fn is_open_offer(&self) -> bool {
        matches!(self.assigned_to, AssignedTo::Partner { .. }) && self.accepted_at.is_none()
    }
}

/// A person told about a lead: its owner, or their manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: Id,
    pub name: String,
    pub email: String,
}

/// What a step of an SLA ladder does when a lead has waited that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaAction {
    /// Remind the owner.
    RemindOwner,
    /// Remind the owner, with their manager in copy.
    RemindWithManager,
    /// Tell the owner's manager (escalation).
    EscalateToManager,
    /// Take the lead away and route it to another owner of the pool.
    Reassign,
    /// Take the lead away and put it in the manager's queue.
    ReturnToQueue,
    /// A partner's offer ran out: offer the lead to the next partner.
    ExpireOffer,
}

impl SlaAction {
    /// Whether the step takes the lead away from its assignee (it ends the ladder).
    pub fn takes_the_lead(self) -> bool {
        matches!(
            self,
            SlaAction::Reassign | SlaAction::ReturnToQueue | SlaAction::ExpireOffer
        )
    }
}

/// Where an assignment stands on its team's SLA ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaTrack {
    /// The team whose ladder and calendar apply; none for a partner offer declined in a pool
    /// without a team (it still goes on to the next partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Id>,
    /// The hot-lead ladder applies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hot: bool,
    /// How many steps were taken: the next is step number `steps_taken`. Every step is
    /// taken under this number, so no step is taken twice.
    #[serde(default)]
    pub steps_taken: u32,
    /// When the next step is due; `None` once the ladder is done or the lead was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<DateTime<Utc>>,
    /// The steps taken, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<SlaStepTaken>,
}

/// One step taken: which, when it was due, when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaStepTaken {
    pub step: u32,
    pub action: SlaAction,
    pub due: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// How an assignment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentEnd {
    /// Sales accepted the lead (it stays assigned).
    Accepted,
    /// The partner declined the offer.
    Declined,
    /// The partner let the offer run out.
    OfferExpired,
    /// The SLA ladder took the lead to another owner.
    Reassigned,
    /// The SLA ladder put the lead in the manager's queue.
    ReturnedToQueue,
    /// Sales handed the lead back to marketing (lost, recycled).
    HandedBack,
}

/// How an assignment ended, and how long the lead waited for it: the raw time, the working
/// time on the team's calendar, and which part of the wait was the system's (until the CRM
/// took the delivery) and which the person's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentOutcome {
    pub end: AssignmentEnd,
    pub at: DateTime<Utc>,
    pub waited_seconds: i64,
    pub waited_working_seconds: i64,
    /// From the assignment until the CRM took the delivery (queues, retries); `None` when it
    /// never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_seconds: Option<i64>,
    /// From the delivery until the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_seconds: Option<i64>,
}
