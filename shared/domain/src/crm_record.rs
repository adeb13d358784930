//! The lead's record in its CRM (docs/domain.md, "Sales feedback"): the statuses a CRM reports
//! and what the CRM last said. Kept on the lead; the handover that fills it is [`crate::crm`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::stage::Stage;

/// What a CRM tells about a lead (`POST /crm/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmStatus {
    Accepted,
    Qualified,
    Opportunity,
    Won,
    Lost,
    Rejected,
    Recycled,
    /// A partner does not take the lead it was offered: it goes to the next partner.
    Declined,
}

impl CrmStatus {
    pub const ALL: [CrmStatus; 8] = [
        CrmStatus::Accepted,
        CrmStatus::Qualified,
        CrmStatus::Opportunity,
        CrmStatus::Won,
        CrmStatus::Lost,
        CrmStatus::Rejected,
        CrmStatus::Recycled,
        CrmStatus::Declined,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CrmStatus::Accepted => "accepted",
            CrmStatus::Qualified => "qualified",
            CrmStatus::Opportunity => "opportunity",
            CrmStatus::Won => "won",
            CrmStatus::Lost => "lost",
            CrmStatus::Rejected => "rejected",
            CrmStatus::Recycled => "recycled",
            CrmStatus::Declined => "declined",
        }
    }

    /// The stage the status moves the lead to. A lost deal goes back to marketing as Recycled
    /// (the loop of docs/domain.md); the CRM status keeps that it was lost. A declined offer
    /// moves no stage: the lead goes to the next partner.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            CrmStatus::Accepted => Some(Stage::Sal),
            CrmStatus::Qualified => Some(Stage::Sql),
            CrmStatus::Opportunity => Some(Stage::Opportunity),
            CrmStatus::Won => Some(Stage::Customer),
            CrmStatus::Lost | CrmStatus::Recycled => Some(Stage::Recycled),
            CrmStatus::Rejected => Some(Stage::Rejected),
            CrmStatus::Declined => None,
        }
    }
}

/// An amount of money in whole units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: u64,
    pub currency: String,
}

/// How the lead is known in the CRM and what the CRM last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmRecord {
    /// The secret reference of the CRM that called back: CRMs are told apart by their secret.
    pub crm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub status: CrmStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunity: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    /// The webhook-ids of this CRM's latest callbacks that changed the lead: a callback
    /// re-run after its answer was lost is recognised and changes nothing a second time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_webhook_ids: Vec<String>,
}
