//! A lead's history (docs/domain.md, "The timeline"): every change is an entry with a time, an
//! actor, an action and, where one is known, a reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who caused a change: the answer to "who did this?" on a lead's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A web form or API client submitting on the person's behalf.
    Form,
    /// leadflow itself (scoring, SLA timers, the outbox relay).
    System,
    /// A named user (sales rep, ops) by their id.
    User(String),
    /// A CRM calling back, by the CRM user who acted (`crm` when it did not say).
    Crm(String),
}

/// What happened to a lead, as its timeline names it (docs/domain.md, "The timeline").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineAction {
    /// A form or API client identified a new lead.
    Captured,
    /// A known e-mail was submitted again: what was new is merged in.
    Resubmitted,
    /// A submission offered other values for fields it may not change (field precedence):
    /// recorded for sales to review, the lead unchanged.
    ChangeProposed,
    /// The lead moved to another lifecycle stage.
    StageChanged,
    /// The lead was assigned to an owner, a manager's queue or a partner.
    Routed,
    /// Inside sales recorded Budget, Authority, Need or Timeframe.
    BantUpdated,
    /// The CRM reported a status that did not move the stage.
    CrmStatus,
    /// The routed lead reached its CRM.
    CrmDelivered,
    /// A delivery to the CRM failed and will be tried again.
    CrmDeliveryAttempt,
    /// Deliveries failed for the whole retry window: parked on the dead-letter queue.
    CrmDeliveryGivenUp,
    /// A delivery was not sent (the lead was reassigned, or no CRM is configured).
    CrmDeliverySkipped,
    /// An SLA step reminded the assignee (the manager in copy, for `remind_with_manager`).
    SlaReminder,
    /// An SLA step told the owner's manager.
    SlaEscalated,
    /// An SLA step took the lead from its owner and gave it to another.
    Reassigned,
    /// An SLA step took the lead from its owner into the manager's queue.
    ReturnedToQueue,
    /// A partner's offer ran out; the lead went on.
    OfferExpired,
    /// A partner declined its offer; the lead goes on at the next tick.
    OfferDeclined,
    /// An SLA step found nobody left to take the lead: it stays where it is.
    SlaExhausted,
    /// Routing could not place a sales-ready lead yet (no routing configuration, nobody able
    /// to take it today): it waits and is tried again later. Once per wait.
    RoutingWaits,
}

impl TimelineAction {
    /// The action's name, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            TimelineAction::Captured => "captured",
            TimelineAction::Resubmitted => "resubmitted",
            TimelineAction::ChangeProposed => "change_proposed",
            TimelineAction::StageChanged => "stage_changed",
            TimelineAction::Routed => "routed",
            TimelineAction::BantUpdated => "bant_updated",
            TimelineAction::CrmStatus => "crm_status",
            TimelineAction::CrmDelivered => "crm_delivered",
            TimelineAction::CrmDeliveryAttempt => "crm_delivery_attempt",
            TimelineAction::CrmDeliveryGivenUp => "crm_delivery_given_up",
            TimelineAction::CrmDeliverySkipped => "crm_delivery_skipped",
            TimelineAction::SlaReminder => "sla_reminder",
            TimelineAction::SlaEscalated => "sla_escalated",
            TimelineAction::Reassigned => "reassigned",
            TimelineAction::ReturnedToQueue => "returned_to_queue",
            TimelineAction::OfferExpired => "offer_expired",
            TimelineAction::OfferDeclined => "offer_declined",
            TimelineAction::SlaExhausted => "sla_exhausted",
            TimelineAction::RoutingWaits => "routing_waits",
        }
    }

    pub const ALL: [TimelineAction; 19] = [
        TimelineAction::Captured,
        TimelineAction::Resubmitted,
        TimelineAction::ChangeProposed,
        TimelineAction::StageChanged,
        TimelineAction::Routed,
        TimelineAction::BantUpdated,
        TimelineAction::CrmStatus,
        TimelineAction::CrmDelivered,
        TimelineAction::CrmDeliveryAttempt,
        TimelineAction::CrmDeliveryGivenUp,
        TimelineAction::CrmDeliverySkipped,
        TimelineAction::SlaReminder,
        TimelineAction::SlaEscalated,
        TimelineAction::Reassigned,
        TimelineAction::ReturnedToQueue,
        TimelineAction::OfferExpired,
        TimelineAction::OfferDeclined,
        TimelineAction::SlaExhausted,
        TimelineAction::RoutingWaits,
    ];
}

impl PartialEq<&str> for TimelineAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for TimelineAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a lead's history: who, when, what, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: TimelineAction,
    /// Facts of the change (changed field names, the touch, the stages); never free-form PII dumps.
    #[serde(default)]
    pub detail: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TimelineEntry {
    /// An entry of leadflow's own doing.
    pub fn system(at: DateTime<Utc>, action: TimelineAction, detail: serde_json::Value) -> Self {
        Self {
            at,
            actor: Actor::System,
            action,
            detail,
            reason: None,
        }
    }

    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_stored_in_snake_case() {
        let names: Vec<String> = TimelineAction::ALL
            .iter()
            .map(|a| {
                serde_json::to_value(a)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "captured",
                "resubmitted",
                "change_proposed",
                "stage_changed",
                "routed",
                "bant_updated",
                "crm_status",
                "crm_delivered",
                "crm_delivery_attempt",
                "crm_delivery_given_up",
                "crm_delivery_skipped",
                "sla_reminder",
                "sla_escalated",
                "reassigned",
                "returned_to_queue",
                "offer_expired",
                "offer_declined",
                "sla_exhausted",
                "routing_waits"
            ]
        );
        for (a, name) in TimelineAction::ALL.iter().zip(&names) {
            let back: TimelineAction = serde_json::from_value(name.clone().into()).unwrap();
            assert_eq!(back, *a);
            assert_eq!(a.as_str(), name, "as_str names what serde stores");
        }
    }
}
