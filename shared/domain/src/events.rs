//! Domain events: what happened to a lead, announced on the event bus for the next step.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::assignment::{Assignment, Person, SlaAction};
use crate::lead::{Lead, LeadId};
use crate::scoring::{Grade, Points, ScoreBand, Temperature};
use crate::stage::Stage;
use crate::timeline::Actor;

/// Version of the event payloads below. Consumers ignore fields they do not know; a change that
/// removes or redefines a field raises this number. 2: `LeadCaptured` no longer carries the
/// lead (its contact data stays in the table; consumers load the lead by `lead_id`).
pub const SCHEMA_VERSION: u32 = 2;

/// The `source` of every leadflow event on the bus (EventBridge rules match on it).
pub const EVENT_SOURCE: &str = "leadflow";

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LeadEvent {
    /// A new lead was identified (stage Inquiry). Events carry no contact data (they sit in
    /// queues and DLQs for up to 14 days, readable by whoever reads the queue): consumers load
    /// the lead by the envelope's `lead_id`. The first-touch attribution is here for
    /// consumers that count captures by source.
    LeadCaptured {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        campaign: Option<String>,
    },
    /// The score moved into another band, grade or temperature (not on every page view).
    LeadScored {
        score: Points,
        band: ScoreBand,
        grade: Grade,
        temperature: Temperature,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product: Option<String>,
        config_version: u64,
    },
    /// The lead became marketing-qualified (MQL): once per transition to MQL.
    LeadQualified {
        score: Points,
        grade: Grade,
        temperature: Temperature,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product: Option<String>,
        config_version: u64,
        reason: String,
    },
    /// The lead was assigned (owner, manager queue or partner), with the rule that matched.
    LeadRouted { assignment: Assignment },
    /// An SLA step reminds the assignee (with their manager in copy for `remind_with_manager`)
    /// that the lead waits for acceptance.
    SlaReminderDue {
        step: u32,
        action: SlaAction,
        /// When the step was due.
        due: DateTime<Utc>,
        assignment: Assignment,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cc: Option<Person>,
    },
    /// An SLA step tells the owner's manager that the lead waits.
    SlaEscalated {
        step: u32,
        due: DateTime<Utc>,
        assignment: Assignment,
        manager: Person,
    },
    /// The lead was taken from `from` (an SLA step) and given to `to`.
    LeadReassigned {
        from: Assignment,
        to: Assignment,
        /// The ladder step that took it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u32>,
    },
    /// A partner's offer was declined or not accepted in time; `next` has the lead now.
    PartnerOfferExpired {
        offer: Assignment,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<Assignment>,
    },
    /// A partner accepted its offer: it now receives the lead with its contact data.
    PartnerOfferAccepted { assignment: Assignment },
    /// A lead moved along the lifecycle.
    StageChanged {
        from: Stage,
        to: Stage,
        actor: Actor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl LeadEvent {
    /// The announcement of a new lead: its id travels in the envelope, its contact data not.
    pub fn captured(lead: &Lead) -> Self {
        LeadEvent::LeadCaptured {
            source: lead.source.clone(),
            campaign: lead.campaign.clone(),
        }
    }

    /// The EventBridge `detail-type`: the event's name.
    pub fn name(&self) -> &'static str {
        match self {
            LeadEvent::LeadCaptured { .. } => "LeadCaptured",
            LeadEvent::LeadScored { .. } => "LeadScored",
            LeadEvent::LeadQualified { .. } => "LeadQualified",
            LeadEvent::LeadRouted { .. } => "LeadRouted",
            LeadEvent::SlaReminderDue { .. } => "SlaReminderDue",
            LeadEvent::SlaEscalated { .. } => "SlaEscalated",
            LeadEvent::LeadReassigned { .. } => "LeadReassigned",
            LeadEvent::PartnerOfferExpired { .. } => "PartnerOfferExpired",
            LeadEvent::PartnerOfferAccepted { .. } => "PartnerOfferAccepted",
            LeadEvent::StageChanged { .. } => "StageChanged",
        }
    }
}

/// An event with its identity: the `detail` of an EventBridge entry. `event_id` is what
/// consumers deduplicate on, since delivery is at least once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub lead_id: LeadId,
    #[serde(flatten)]
    pub event: LeadEvent,
}

impl EventEnvelope {
    pub fn new(lead_id: LeadId, occurred_at: DateTime<Utc>, event: LeadEvent) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            occurred_at,
            lead_id,
            event,
        }
    }

    pub fn detail_type(&self) -> &'static str {
        self.event.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_carries_type_and_version() {
        let id: LeadId = "0190d2a4-0000-7000-8000-000000000001".parse().unwrap();
        let e = EventEnvelope::new(
            id,
            "2026-01-01T00:00:00Z".parse().unwrap(),
            LeadEvent::StageChanged {
                from: Stage::Inquiry,
                to: Stage::Mql,
                actor: Actor::System,
                reason: None,
            },
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "StageChanged");
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert_eq!(json["to"], "MQL");
        assert_eq!(json["actor"]["kind"], "system");
        let back: EventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.detail_type(), "StageChanged");
    }

    #[test]
    fn a_captured_lead_is_announced_by_its_id_alone() {
        let id: LeadId = "0190d2a4-0000-7000-8000-000000000001".parse().unwrap();
        let e = EventEnvelope::new(
            id,
            "2026-01-01T00:00:00Z".parse().unwrap(),
            LeadEvent::LeadCaptured {
                source: Some("webinar".into()),
                campaign: None,
            },
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["lead_id"], id.to_string());
        assert_eq!(json["source"], "webinar");
        assert!(json.get("lead").is_none() && json.get("campaign").is_none());
        // A version-1 event (still in a queue or DLQ when this version deploys) carried the
        // whole lead: it is read all the same, the lead ignored.
        let v1 = serde_json::json!({
            "schema_version": 1,
            "event_id": "01935c6e-8a4f-7000-8000-000000000001",
            "occurred_at": "2026-11-23T09:15:00Z",
            "lead_id": id.to_string(),
            "type": "LeadCaptured",
            "lead": { "id": id.to_string(), "email": "anna@example.com", "stage": "Inquiry" }
        });
        let read: EventEnvelope = serde_json::from_value(v1).unwrap();
        assert_eq!(read.lead_id, id);
        assert!(matches!(
            read.event,
            LeadEvent::LeadCaptured {
                source: None,
                campaign: None
            }
        ));
    }
}
