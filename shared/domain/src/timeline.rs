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

/// One entry of a lead's history: who, when, what, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// What happened, in snake case: `captured`, `resubmitted`, `stage_changed`, ...
    pub action: String,
    /// Facts of the change (changed field names, the touch, the stages); never free-form PII dumps.
    #[serde(default)]
    pub detail: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
