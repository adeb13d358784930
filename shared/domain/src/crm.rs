//! The CRM handover (docs/domain.md, "Handover and SLA" and "Sales feedback"): what a CRM
//! receives about a routed lead, when a failed delivery is tried again, and what the CRM's
//! answers (accepted, qualified, ...) do to the lead. Pure: the crm-webhook and crm-callback
//! functions do the sending and storing.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::assignment::{AssignedTo, Assignment, AssignmentEnd, Person, SlaAction, SlaTrack};
use crate::bant::Bant;
use crate::change::Change;
use crate::crm_record::{CrmRecord, CrmStatus, Money};
use crate::events::{EventEnvelope, LeadEvent};
use crate::fields::FieldErrors;
use crate::lead::{Consent, Lead, LeadId, Utm};
use crate::lead_score::LeadScore;
use crate::scoring::{Contribution, Grade, Points, ScoreBand, Temperature, TopEvent};
use crate::sla::SlaConfig;
use crate::stage::{Stage, TransitionError};
use crate::tag::Tag;
use crate::timeline::{Actor, TimelineAction, TimelineEntry};

/// Version of the delivered payload (docs/crm-webhook.schema.json). Fields may be added
/// within a version; removing, renaming or redefining one raises it, with an entry in the
/// changelog of docs/crm.md ("Payload versions").
pub const PAYLOAD_VERSION: u32 = 1;
/// The payload's `type`: a lead handed over, with everything known.
pub const LEAD_ROUTED: &str = "lead.routed";
/// A lead offered to a partner, without its contact data until the partner accepts.
pub const LEAD_OFFERED: &str = "lead.offered";
/// The SLA notifications ([`NoticePayload`]).
pub const SLA_REMINDER: &str = "lead.sla.reminder";
pub const SLA_ESCALATED: &str = "lead.sla.escalated";
pub const LEAD_REASSIGNED: &str = "lead.reassigned";
pub const OFFER_EXPIRED: &str = "lead.offer.expired";
/// How many of the lead's latest activities travel with it.
pub const ACTIVITIES_SENT: usize = 20;

/// The `webhook-id` of a routed lead's delivery: the same on every attempt and replay (it is
/// the `LeadRouted` event's id), so the CRM can drop duplicates.
pub fn webhook_id(routed_event: uuid::Uuid) -> String {
    format!("msg_{}", routed_event.simple())
}

/// One activity as stored by scoring (kept with the lead's score).
pub use crate::lead_score::Activity;
// The payload's activities are all kept with the score.
const _: () = assert!(ACTIVITIES_SENT <= crate::lead_score::RECENT_ACTIVITIES);

/// The body POSTed to the CRM: a Standard Webhooks payload (`type`, `timestamp`, `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadRoutedPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    /// When the lead was routed.
    pub timestamp: DateTime<Utc>,
    pub data: LeadContext,
}

/// Everything known about a routed lead (docs/domain.md: what sales and partners receive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadContext {
    pub lead_id: LeadId,
    pub stage: Stage,
    pub created_at: DateTime<Utc>,
    /// Null in an offer to a partner (`lead.offered`) until it accepts.
    pub contact: Option<Contact>,
    pub company: Company,
    pub attribution: Attribution,
    pub score: Option<ScoreSummary>,
    /// Tag → interest weight now (1.0 is one fresh event), strongest first.
    pub interests: Vec<Interest>,
    /// The latest activities, newest first.
    pub activities: Vec<ActivitySummary>,
    pub consent: Option<Consent>,
    pub bant: Option<Bant>,
    pub assignment: Assignment,
    pub custom_fields: BTreeMap<String, String>,
    pub links: Links,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub job_title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub name: Option<String>,
    pub size: Option<String>,
    pub industry: Option<String>,
    pub country: Option<String>,
    pub postcode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub source: Option<String>,
    pub campaign: Option<String>,
    pub utm: Utm,
    pub landing_page_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub score: Points,
    pub behaviour: Points,
    pub fit: Points,
    pub band: ScoreBand,
    pub grade: Grade,
    pub temperature: Temperature,
    pub product: Option<String>,
    pub config_version: u64,
    pub at: DateTime<Utc>,
    /// Every rule that gave or took points; their sum is `score`.
    pub explanation: Vec<Contribution>,
    pub top_events: Vec<TopEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interest {
    pub tag: String,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivitySummary {
    /// The event type, named as in `score.top_events[]` (not `type`, which names the payload).
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub url: Option<String>,
    pub tags: Vec<Tag>,
    /// What scoring made of it (points, capped, ...).
    pub scored: Value,
}

/// Where the CRM finds more and answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Links {
    /// The lead with its timeline (GET, IAM-signed).
    pub lead: Option<String>,
    /// Where the CRM posts status changes (signed like this delivery).
    pub callback: Option<String>,
}

impl LeadContext {
    /// Builds the context; `api_url` is the HTTP API's base URL (links are left out without it).
    pub fn build(
        lead: &Lead,
        assignment: &Assignment,
        score: Option<&LeadScore>,
        interests: &BTreeMap<String, f64>,
        activities: &[Activity],
        api_url: Option<&str>,
    ) -> Self {
        let mut interests: Vec<Interest> = interests
            .iter()
            .filter(|(_, w)| **w >= 0.01)
            .map(|(tag, weight)| Interest {
                tag: tag.clone(),
                weight: (weight * 100.0).round() / 100.0,
            })
            .collect();
        interests.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.tag.cmp(&b.tag)));
        let mut activities: Vec<&Activity> = activities.iter().collect();
        activities.sort_by_key(|a| std::cmp::Reverse(a.event.occurred_at));
        LeadContext {
            lead_id: lead.id,
            stage: lead.stage,
            created_at: lead.created_at,
            contact: Some(Contact {
                email: lead.email.to_string(),
                first_name: lead.first_name.clone(),
                last_name: lead.last_name.clone(),
                phone: lead.phone.clone(),
                job_title: lead.job_title.clone(),
            }),
            company: Company {
                name: lead.company.clone(),
                size: lead.company_size.clone(),
                industry: lead.industry.clone(),
                country: lead.country.clone(),
                postcode: lead.postcode.clone(),
            },
            attribution: Attribution {
                source: lead.source.clone(),
                campaign: lead.campaign.clone(),
                utm: lead.utm.clone(),
                landing_page_url: lead.landing_page_url.clone(),
            },
            score: score.and_then(|s| {
                s.snapshot.as_ref().map(|snap| ScoreSummary {
                    score: snap.score,
                    behaviour: snap.behaviour,
                    fit: snap.fit,
                    band: snap.band,
                    grade: snap.grade,
                    temperature: snap.temperature,
                    product: snap.product.clone(),
                    config_version: s.config_version,
                    at: snap.at,
                    explanation: snap.contributions.clone(),
                    top_events: snap.top_events.clone(),
                })
            }),
            interests,
            activities: activities
                .into_iter()
                .take(ACTIVITIES_SENT)
                .map(|a| ActivitySummary {
                    event_type: a.event.event_type.clone(),
                    occurred_at: a.event.occurred_at,
                    url: a.event.url.clone(),
                    tags: a.event.tags.clone(),
                    scored: a.applied.clone(),
                })
                .collect(),
            consent: lead.consent.clone(),
            bant: lead.bant.clone(),
            assignment: assignment.clone(),
            custom_fields: lead.custom_fields.clone(),
            links: Links::of(lead.id, api_url),
        }
    }
}

impl LeadContext {
    /// What a partner sees of a lead it was offered: temperature, score, interests and what it
    /// did, but no contact data (the person, the company's name and postcode, the consent
    /// proof, BANT notes, custom fields, the landing page and the visited URLs) until it
    /// accepts.
    pub fn offered(mut self) -> Self {
        self.contact = None;
        self.company.name = None;
        self.company.postcode = None;
        self.consent = None;
        // What inside sales wrote down may name people.
        self.bant = None;
        self.custom_fields.clear();
        self.attribution.landing_page_url = None;
        for a in &mut self.activities {
            a.url = None;
        }
        // The lead's page in leadflow shows everything.
        self.links.lead = None;
        self
    }
}

/// An SLA notification (`lead.sla.reminder`, `lead.sla.escalated`, `lead.reassigned`,
/// `lead.offer.expired`): signed and delivered like a routed lead, to the CRM of the person
/// concerned or the team's notification URL. `text` is a line for people (a chat incoming
/// webhook shows it); `data` is for programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticePayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    /// When the step was taken.
    pub timestamp: DateTime<Utc>,
    pub text: String,
    pub data: Notice,
}

/// What an SLA notification says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub lead_id: LeadId,
    /// The step of the ladder (none: a partner declined).
    pub step: Option<u32>,
    pub action: Option<SlaAction>,
    /// When the step was due.
    pub due: Option<DateTime<Utc>>,
    /// The assignment the notice is about: the one waiting, or the one taken away.
    pub assignment: Assignment,
    /// Who has the lead now, when it was taken away.
    pub now_with: Option<AssignedTo>,
    /// The manager in copy of a reminder, or the manager told of an escalation.
    pub manager: Option<Person>,
    pub links: Links,
}

/// Whom a notice is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The owner or partner of the assignment concerned (their CRM).
    Assignee(AssignedTo),
    /// The manager told of an escalation (the manager's CRM).
    Manager(Person),
}

fn name_of(to: &AssignedTo) -> &str {
    match to {
        AssignedTo::Owner { name, .. }
        | AssignedTo::ManagerQueue { name, .. }
        | AssignedTo::Partner { name, .. } => name,
    }
}

impl Notice {
    /// The notice an SLA event makes, its `type` and whom it is for; `None` for events that
    /// are not notices (and for a declined offer: the partner knows).
    pub fn of(
        event: &EventEnvelope,
        api_url: Option<&str>,
    ) -> Option<(&'static str, Recipient, Notice)> {
        let links = Links::of(event.lead_id, api_url);
        let notice = |step, action, due, assignment: &Assignment, now_with, manager| Notice {
            lead_id: event.lead_id,
            step,
            action,
            due,
            assignment: assignment.clone(),
            now_with,
            manager,
            links: links.clone(),
        };
        Some(match &event.event {
            LeadEvent::SlaReminderDue {
                step,
                action,
                due,
                assignment,
                cc,
            } => (
                SLA_REMINDER,
                Recipient::Assignee(assignment.assigned_to.clone()),
                notice(
                    Some(*step),
                    Some(*action),
                    Some(*due),
                    assignment,
                    None,
                    cc.clone(),
                ),
            ),
            LeadEvent::SlaEscalated {
                step,
                due,
                assignment,
                manager,
            } => (
                SLA_ESCALATED,
                Recipient::Manager(manager.clone()),
                notice(
                    Some(*step),
                    Some(SlaAction::EscalateToManager),
                    Some(*due),
                    assignment,
                    None,
                    Some(manager.clone()),
                ),
            ),
            LeadEvent::LeadReassigned { from, to, step } => (
                LEAD_REASSIGNED,
                Recipient::Assignee(from.assigned_to.clone()),
                notice(
                    *step,
                    from.sla
                        .as_ref()
                        .and_then(|t| t.steps.last())
                        .map(|s| s.action),
                    from.sla
                        .as_ref()
                        .and_then(|t| t.steps.last())
                        .map(|s| s.due),
                    from,
                    Some(to.assigned_to.clone()),
                    None,
                ),
            ),
            LeadEvent::PartnerOfferExpired { offer, next } => {
                let declined = offer
                    .outcome
                    .as_ref()
                    .is_some_and(|o| o.end == AssignmentEnd::Declined);
                if declined {
                    return None;
                }
                // The partner never had the lead: no link to its page either.
                let mut withheld = links.clone();
                withheld.lead = None;
                (
                    OFFER_EXPIRED,
                    Recipient::Assignee(offer.assigned_to.clone()),
                    Notice {
                        links: withheld,
                        ..notice(
                            offer.sla.as_ref().map(|t| t.steps_taken.saturating_sub(1)),
                            Some(SlaAction::ExpireOffer),
                            Some(offer.sla_deadline),
                            offer,
                            next.as_ref().map(|n| n.assigned_to.clone()),
                            None,
                        )
                    },
                )
            }
            _ => return None,
        })
    }

    /// A line for people: what happened, to whom, since when.
    pub fn text(&self, kind: &str) -> String {
        let who = name_of(&self.assignment.assigned_to);
        let since = self.assignment.at.format("%Y-%m-%d %H:%M UTC");
        let link = self
            .links
            .lead
            .as_deref()
            .map(|l| format!(" {l}"))
            .unwrap_or_default();
        match kind {
            SLA_REMINDER => format!(
                "Reminder: lead {} waits for acceptance by {who} since {since}{}.{link}",
                self.lead_id,
                self.manager
                    .as_ref()
                    .map(|m| format!(" (cc {})", m.name))
                    .unwrap_or_default()
            ),
            SLA_ESCALATED => format!(
                "Escalation: lead {} has waited for acceptance by {who} since {since}.{link}",
                self.lead_id
            ),
            LEAD_REASSIGNED => format!(
                "Lead {} was taken from {who}, who did not accept it since {since}; it is with {} now.{link}",
                self.lead_id,
                self.now_with.as_ref().map_or("nobody", name_of)
            ),
            _ => format!(
                "The offer of lead {} to {who} (since {since}) ran out; it is with {} now.",
                self.lead_id,
                self.now_with.as_ref().map_or("nobody", name_of)
            ),
        }
    }
}

impl Links {
    /// The lead's page and the callback, under the HTTP API's base URL (none without one).
    pub fn of(lead_id: LeadId, api_url: Option<&str>) -> Self {
        let base = api_url.map(|u| u.trim_end_matches('/').to_owned());
        Links {
            lead: base.as_ref().map(|b| format!("{b}/leads/{lead_id}")),
            callback: base.as_ref().map(|b| format!("{b}/crm/events")),
        }
    }
}

/// When a failed delivery is tried again: exponential backoff from `base` with jitter, for
/// at most `window` after the first attempt; after that the delivery goes to the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub window: Duration,
}

/// The longest an SQS message can stay invisible in one go.
/// The 12 hours count from the message's receipt, so a delay set a little later must leave
/// room for the attempt itself.
pub const MAX_RETRY_DELAY: Duration = Duration::minutes(12 * 60 - 5);

impl RetryPolicy {
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        base: Duration::seconds(30),
        window: Duration::hours(24),
    };

    /// The wait before the next attempt, after attempt number `attempt` (1 = the first) failed
    /// `elapsed` after the first attempt. `jitter` in [0, 1) spreads retries of many leads
    /// ("equal jitter": between half and all of the exponential delay). `None`: give up.
    pub fn next_delay(&self, attempt: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        let remaining = self.window.checked_sub(&elapsed)?;
        if remaining < Duration::seconds(1) {
            return None;
        }
        let base_ms = self.base.num_milliseconds().max(1000) as f64;
        let exp = base_ms * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = exp.min(MAX_RETRY_DELAY.num_milliseconds() as f64);
        let jittered = capped / 2.0 + capped / 2.0 * jitter.clamp(0.0, 1.0);
        let delay = Duration::milliseconds(jittered as i64).max(Duration::seconds(1));
        Some(delay.min(remaining))
    }
}

/// How many applied webhook-ids a lead remembers.
const RECENT_WEBHOOK_IDS: usize = 20;

/// A validated `POST /crm/events` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmUpdate {
    pub status: CrmStatus,
    pub lead_id: Option<LeadId>,
    pub external_id: Option<String>,
    /// Who in the CRM did it (a user name or id), for the timeline.
    pub by: Option<String>,
    pub reason: Option<String>,
    pub money: Option<Money>,
    /// The BANT fields of a `qualified` status, merged over what is known.
    pub bant: Option<Value>,
}

const MAX_TEXT: usize = 1000;

fn text(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    errors: &mut FieldErrors,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT => Some(s.trim().to_owned()),
        Some(Value::String(_)) => {
            errors.insert(key.into(), format!("must be at most {MAX_TEXT} characters"));
            None
        }
        Some(_) => {
            errors.insert(key.into(), "must be a string".into());
            None
        }
    }
}

impl CrmUpdate {
    pub fn parse(body: &Value) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let Some(obj) = body.as_object() else {
            errors.insert("body".into(), "must be a JSON object".into());
            return Err(errors);
        };
        const KNOWN: [&str; 8] = [
            "status",
            "lead_id",
            "external_id",
            "by",
            "reason",
            "amount",
            "currency",
            "bant",
        ];
        for key in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            errors.insert(key.clone(), "unknown field".into());
        }
        let names = || {
            CrmStatus::ALL
                .iter()
                .map(CrmStatus::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let status = match obj.get("status") {
            None | Some(Value::Null) => {
                errors.insert("status".into(), format!("is required: one of {}", names()));
                None
            }
            Some(v) => match serde_json::from_value::<CrmStatus>(v.clone()) {
                Ok(s) => Some(s),
                Err(_) => {
                    errors.insert("status".into(), format!("must be one of {}", names()));
                    None
                }
            },
        };
        let lead_id = match text(obj, "lead_id", &mut errors) {
            Some(s) => match s.parse::<LeadId>() {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.insert("lead_id".into(), "must be a leadflow lead id (UUID)".into());
                    None
                }
            },
            None => None,
        };
        let external_id = text(obj, "external_id", &mut errors);
        if external_id.as_ref().is_some_and(|e| e.len() > 200) {
            errors.insert("external_id".into(), "must be at most 200 bytes".into());
        }
        if lead_id.is_none() && external_id.is_none() && !errors.contains_key("lead_id") {
            errors.insert(
                "lead_id".into(),
                "give lead_id (leadflow's id) or external_id (the CRM's id, once linked)".into(),
            );
        }
        let by = text(obj, "by", &mut errors);
        if by
            .as_ref()
            .is_some_and(|b| b.chars().count() > 128 || b.chars().any(char::is_control))
        {
            errors.insert(
                "by".into(),
                "must be at most 128 characters, without control characters".into(),
            );
        }
        let reason = text(obj, "reason", &mut errors);
        let amount = match obj.get("amount") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(a) => Some(a),
                None => {
                    errors.insert(
                        "amount".into(),
                        "must be a whole, non-negative number of currency units".into(),
                    );
                    None
                }
            },
        };
        let currency = text(obj, "currency", &mut errors).map(|c| c.to_ascii_uppercase());
        if currency
            .as_ref()
            .is_some_and(|c| c.len() != 3 || !c.chars().all(|c| c.is_ascii_uppercase()))
        {
            errors.insert(
                "currency".into(),
                "must be an ISO 4217 code such as EUR".into(),
            );
        }
        let bant = match obj.get("bant") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                errors.insert("bant".into(), "must be an object".into());
                None
            }
        };
        match status {
            Some(CrmStatus::Rejected) if reason.is_none() && !errors.contains_key("reason") => {
                errors.insert(
                    "reason".into(),
                    "is required when a lead is rejected (why will it never buy?)".into(),
                );
            }
            Some(CrmStatus::Opportunity) => {
                if amount.is_none() && !errors.contains_key("amount") {
                    errors.insert("amount".into(), "is required for an opportunity".into());
                }
                if currency.is_none() && !errors.contains_key("currency") {
                    errors.insert("currency".into(), "is required for an opportunity".into());
                }
            }
            _ => {}
        }
        if amount.is_some() != currency.is_some()
            && !errors.contains_key("amount")
            && !errors.contains_key("currency")
        {
            errors.insert(
                if amount.is_some() {
                    "currency"
                } else {
                    "amount"
                }
                .into(),
                "amount and currency go together".into(),
            );
        }
        if bant.is_some() && status != Some(CrmStatus::Qualified) {
            errors.insert("bant".into(), "only a qualified status carries BANT".into());
        }
        match (status, errors.is_empty()) {
            (Some(status), true) => Ok(CrmUpdate {
                status,
                lead_id,
                external_id,
                by,
                reason,
                money: amount
                    .zip(currency)
                    .map(|(amount, currency)| Money { amount, currency }),
                bant,
            }),
            _ => Err(errors),
        }
    }
}

/// Why an update cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrmUpdateError {
    /// 409: the lifecycle does not allow the move.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// 422: a field is missing or wrong for this lead (e.g. BANT incomplete for an SQL).
    #[error("invalid fields")]
    Fields(FieldErrors),
    /// 409: the lead is linked to another CRM record.
    #[error("the lead is linked to CRM record {0:?}")]
    OtherRecord(String),
    /// The callback with this webhook-id was applied before (its answer was lost): 200, and
    /// nothing changes again.
    #[error("this webhook-id was applied before")]
    AlreadyApplied,
}

/// What an applied update changed.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmChange {
    pub from: Stage,
    pub to: Stage,
    /// The timeline entry, and `StageChanged` when the stage moved.
    pub change: Change,
    pub stage_changed: bool,
}

/// Applies a CRM's update to the lead. `crm` is the secret reference of the CRM that signed it
/// (its identity), `webhook_id` the callback's id. A status that repeats the lead's stage
/// changes nothing but the record. The record (external id, amount) is the calling CRM's: a lead
/// handed to another CRM starts a new one. Acceptance stops the SLA clock and measures the
/// wait on the team's calendar (`sla`); a partner's acceptance of its offer releases the
/// lead's contact data to it (`PartnerOfferAccepted`); a partner's `declined` sends the lead
/// on to the next partner at the next tick.
pub fn apply_update(
    lead: &mut Lead,
    update: &CrmUpdate,
    crm: &str,
    webhook_id: &str,
    now: DateTime<Utc>,
    sla: &SlaConfig,
) -> Result<CrmChange, CrmUpdateError> {
    let previous = lead.crm.clone().filter(|r| r.crm == crm);
    if let Some(p) = &previous {
        if p.recent_webhook_ids.iter().any(|id| id == webhook_id) {
            return Err(CrmUpdateError::AlreadyApplied);
        }
        if let (Some(record_id), Some(ext)) = (&p.external_id, &update.external_id) {
            if record_id != ext {
                return Err(CrmUpdateError::OtherRecord(record_id.clone()));
            }
        }
    }
    let from = lead.stage;
    let to = update.status.stage().unwrap_or(from);
    if from != to {
        from.transition(to)?;
    }
    let open_offer = lead.assignment.as_ref().is_some_and(|a| a.is_open_offer());
    if update.status == CrmStatus::Declined && !open_offer {
        return Err(CrmUpdateError::Fields(FieldErrors::from([(
            "status".into(),
            "only a partner declines a lead it was offered and has not accepted; owners hand a lead back with lost, recycled or rejected".into(),
        )])));
    }
    let actor = Actor::Crm(update.by.clone().unwrap_or_else(|| "crm".into()));
    let mut detail = json!({ "status": update.status.as_str(), "from": from, "to": to });
    if update.status == CrmStatus::Qualified {
        let mut patch = update.bant.clone().unwrap_or_else(|| json!({}));
        if let Some(obj) = patch.as_object_mut() {
            obj.entry("by")
                .or_insert_with(|| json!(update.by.as_deref().unwrap_or("crm")));
        }
        let merged = Bant::patch(lead.bant.as_ref(), &patch, now).map_err(|e| {
            CrmUpdateError::Fields(
                e.into_iter()
                    .map(|(k, v)| (format!("bant.{k}"), v))
                    .collect(),
            )
        })?;
        if !merged.is_complete() {
            return Err(CrmUpdateError::Fields(FieldErrors::from([(
                "bant".into(),
                "an SQL needs budget, authority, need and timeframe (send what is missing)".into(),
            )])));
        }
        lead.bant = Some(merged);
    }
    let external_id = update
        .external_id
        .clone()
        .or_else(|| previous.as_ref().and_then(|p| p.external_id.clone()));
    let opportunity = update
        .money
        .clone()
        .or_else(|| previous.as_ref().and_then(|p| p.opportunity.clone()));
    if let Some(m) = &update.money {
        detail["amount"] = json!(m.amount);
        detail["currency"] = json!(m.currency);
    }
    let mut recent_webhook_ids = previous.map(|p| p.recent_webhook_ids).unwrap_or_default();
    recent_webhook_ids.push(webhook_id.to_owned());
    let excess = recent_webhook_ids.len().saturating_sub(RECENT_WEBHOOK_IDS);
    recent_webhook_ids.drain(..excess);
    lead.crm = Some(CrmRecord {
        crm: crm.to_owned(),
        external_id,
        status: update.status.clone(),
        opportunity,
        reason: update.reason.clone(),
        at: now,
        recent_webhook_ids,
    });
    let mut events = Vec::new();
    match update.status {
        CrmStatus::Accepted | CrmStatus::Qualified | CrmStatus::Opportunity | CrmStatus::Won => {
            // Sales took the lead (whichever step the CRM reports first): the SLA clock stops.
            if let Some(a) = lead.assignment.as_mut().filter(|a| a.accepted_at.is_none()) {
                a.accept(now);
                a.outcome = Some(sla.outcome(a, AssignmentEnd::Accepted, now));
                if open_offer {
                    events.push(LeadEvent::PartnerOfferAccepted {
                        assignment: a.clone(),
                    });
                }
            }
        }
        CrmStatus::Lost | CrmStatus::Recycled if from != to => {
            // Back to marketing: a later qualification routes it afresh.
            if let Some(mut a) = lead.assignment.take() {
                detail["previous_assignment"] = json!(a);
                if a.outcome.is_none() {
                    a.outcome = Some(sla.outcome(&a, AssignmentEnd::HandedBack, now));
                }
                if let Some(track) = a.sla.as_mut() {
                    track.next_due = None;
                }
                lead.assignment_history.push(a);
            }
        }
        CrmStatus::Declined => {
            if let Some(a) = lead.assignment.as_mut() {
                a.outcome = Some(sla.outcome(a, AssignmentEnd::Declined, now));
                // The next tick offers the lead to the next partner.
                a.sla
                    .get_or_insert_with(|| SlaTrack {
                        team: None,
                        hot: false,
                        steps_taken: 0,
                        next_due: None,
                        steps: Vec::new(),
                    })
                    .next_due = Some(now);
            }
        }
        _ => {}
    }
    lead.stage = to;
    lead.updated_at = now;
    let action = match (from == to, &update.status) {
        (_, CrmStatus::Declined) => TimelineAction::OfferDeclined,
        (true, _) => TimelineAction::CrmStatus,
        (false, _) => TimelineAction::StageChanged,
    };
    let mut change = Change::entry(TimelineEntry {
        at: now,
        actor: actor.clone(),
        action,
        detail,
        reason: update.reason.clone(),
    });
    if from != to {
        change.events.push(LeadEvent::StageChanged {
            from,
            to,
            actor,
            reason: update.reason.clone(),
        });
    }
    change.events.extend(events);
    Ok(CrmChange {
        from,
        to,
        change,
        stage_changed: from != to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(v: Value) -> Result<CrmUpdate, FieldErrors> {
        CrmUpdate::parse(&v)
    }

    const ID: &str = "0190d2a4-0000-7000-8000-000000000001";

    #[test]
    fn statuses_map_to_stages() {
        assert_eq!(CrmStatus::Accepted.stage(), Some(Stage::Sal));
        assert_eq!(CrmStatus::Qualified.stage(), Some(Stage::Sql));
        assert_eq!(CrmStatus::Opportunity.stage(), Some(Stage::Opportunity));
        assert_eq!(CrmStatus::Won.stage(), Some(Stage::Customer));
        assert_eq!(CrmStatus::Lost.stage(), Some(Stage::Recycled));
        assert_eq!(CrmStatus::Rejected.stage(), Some(Stage::Rejected));
        assert_eq!(CrmStatus::Recycled.stage(), Some(Stage::Recycled));
        assert_eq!(
            CrmStatus::Declined.stage(),
            None,
            "a declined offer moves no stage"
        );
    }

    #[test]
    fn a_rejection_needs_a_reason() {
        let e = parse(json!({"status": "rejected", "lead_id": ID})).unwrap_err();
        assert!(e["reason"].contains("required"), "{e:?}");
        let ok = parse(json!({"status": "rejected", "lead_id": ID, "reason": "student"})).unwrap();
        assert_eq!(ok.reason.as_deref(), Some("student"));
    }

    #[test]
    fn an_opportunity_needs_an_amount_in_a_currency() {
        let e = parse(json!({"status": "opportunity", "lead_id": ID})).unwrap_err();
        assert!(
            e.contains_key("amount") && e.contains_key("currency"),
            "{e:?}"
        );
        let e = parse(
            json!({"status": "opportunity", "lead_id": ID, "amount": -5, "currency": "euro"}),
        )
        .unwrap_err();
        assert!(
            e.contains_key("amount") && e.contains_key("currency"),
            "{e:?}"
        );
        let ok = parse(
            json!({"status": "opportunity", "lead_id": ID, "amount": 12000, "currency": "EUR"}),
        )
        .unwrap();
        assert_eq!(
            ok.money,
            Some(Money {
                amount: 12000,
                currency: "EUR".into()
            })
        );
    }

    #[test]
    fn bad_bodies_name_their_fields() {
        let e = parse(json!({"status": "bought", "lead_id": "x", "colour": 1})).unwrap_err();
        assert!(e["status"].contains("accepted"), "{e:?}");
        assert!(
            e.contains_key("lead_id") && e.contains_key("colour"),
            "{e:?}"
        );
        let e = parse(json!({"status": "accepted"})).unwrap_err();
        assert!(e["lead_id"].contains("external_id"), "{e:?}");
        assert!(parse(json!({"status": "accepted", "external_id": "006A1"})).is_ok());
        assert!(parse(json!([1])).unwrap_err().contains_key("body"));
        let e =
            parse(json!({"status": "accepted", "lead_id": ID, "bant": {"need": "x"}})).unwrap_err();
        assert!(e.contains_key("bant"), "{e:?}");
    }

    fn routed_lead() -> Lead {
        use crate::assignment::AssignedTo;
        use crate::lead::SubmissionContext;
        use crate::submission::SubmissionRules;
        let at: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let raw = vec![("email".to_owned(), "a@b.de".to_owned())];
        let s = SubmissionRules::default().validate(&raw).unwrap();
        let mut lead = Lead::capture(LeadId::new_at(at), s, &SubmissionContext::default(), at).lead;
        lead.stage = Stage::Mql;
        lead.assignment = Some(Assignment {
            assigned_to: AssignedTo::Owner {
                id: "anna".into(),
                name: "Anna".into(),
                email: "anna@example.com".into(),
            },
            pool: "sales".into(),
            rule: None,
            fast_track: false,
            config_version: 1,
            at,
            sla_deadline: at + Duration::hours(24),
            accepted_at: None,
            sla: None,
            delivered_at: None,
            outcome: None,
        });
        lead
    }

    #[test]
    fn an_update_moves_the_stage_and_keeps_the_record() {
        let now: DateTime<Utc> = "2026-11-22T13:00:00Z".parse().unwrap();
        let mut lead = routed_lead();
        let accepted = parse(
            json!({"status": "accepted", "lead_id": ID, "external_id": "006A1", "by": "anna"}),
        )
        .unwrap();
        let change = apply_update(
            &mut lead,
            &accepted,
            "env:CRM",
            "msg_accepted",
            now,
            &SlaConfig::default(),
        )
        .unwrap();
        assert_eq!(
            (change.from, change.to, change.stage_changed),
            (Stage::Mql, Stage::Sal, true)
        );
        assert_eq!(lead.stage, Stage::Sal);
        assert_eq!(lead.assignment.as_ref().unwrap().accepted_at, Some(now));
        assert_eq!(change.change.timeline[0].actor, Actor::Crm("anna".into()));
        assert!(matches!(
            change.change.events[..],
            [LeadEvent::StageChanged {
                from: Stage::Mql,
                to: Stage::Sal,
                ..
            }]
        ));
        assert_eq!(
            lead.crm.as_ref().unwrap().external_id.as_deref(),
            Some("006A1")
        );
        // Said again: nothing moves, the first acceptance time stays.
        let later = now + Duration::minutes(5);
        assert_eq!(
            apply_update(
                &mut lead,
                &accepted,
                "env:CRM",
                "msg_accepted",
                later,
                &SlaConfig::default()
            ),
            Err(CrmUpdateError::AlreadyApplied),
            "the same callback, re-run, changes nothing"
        );
        let again = apply_update(
            &mut lead,
            &accepted,
            "env:CRM",
            "msg_accepted_again",
            later,
            &SlaConfig::default(),
        )
        .unwrap();
        assert!(!again.stage_changed);
        assert!(
            again.change.events.is_empty(),
            "no stage move, nothing announced"
        );
        assert_eq!(again.change.timeline[0].action, TimelineAction::CrmStatus);
        assert_eq!(lead.assignment.as_ref().unwrap().accepted_at, Some(now));
        // Another CRM record for the same lead is refused.
        let other =
            parse(json!({"status": "qualified", "lead_id": ID, "external_id": "999"})).unwrap();
        assert!(matches!(
            apply_update(
                &mut lead,
                &other,
                "env:CRM",
                "msg_other",
                now,
                &SlaConfig::default()
            ),
            Err(CrmUpdateError::OtherRecord(_))
        ));
        // Skipping ahead is refused with what is allowed.
        let won = parse(json!({"status": "won", "lead_id": ID})).unwrap();
        match apply_update(
            &mut lead,
            &won,
            "env:CRM",
            "msg_won",
            now,
            &SlaConfig::default(),
        ) {
            Err(CrmUpdateError::Transition(t)) => {
                assert_eq!(
                    t.allowed,
                    [
                        Stage::Sql,
                        Stage::Opportunity,
                        Stage::Rejected,
                        Stage::Recycled
                    ]
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lead.stage, Stage::Sal, "a refused update changes nothing");
    }

    #[test]
    fn another_crm_starts_its_own_record() {
        let now: DateTime<Utc> = "2026-11-22T13:00:00Z".parse().unwrap();
        let mut lead = routed_lead();
        let a = parse(json!({"status": "accepted", "lead_id": ID, "external_id": "A-1"})).unwrap();
        apply_update(
            &mut lead,
            &a,
            "env:CRM_A",
            "msg_1",
            now,
            &SlaConfig::default(),
        )
        .unwrap();
        // Handed to CRM B (say, after a recycle and a new routing): B links its own id.
        let b = parse(json!({"status": "qualified", "lead_id": ID, "external_id": "B-7",
            "bant": {"budget": {"amount": 1, "currency": "EUR"}, "authority": "user", "need": "x", "timeframe": "now"}}))
        .unwrap();
        apply_update(
            &mut lead,
            &b,
            "env:CRM_B",
            "msg_1",
            now,
            &SlaConfig::default(),
        )
        .unwrap();
        let record = lead.crm.as_ref().unwrap();
        assert_eq!(
            (record.crm.as_str(), record.external_id.as_deref()),
            ("env:CRM_B", Some("B-7"))
        );
        assert_eq!(record.recent_webhook_ids, ["msg_1"], "B's ids only");
    }

    #[test]
    fn a_crm_user_name_is_bounded() {
        let e =
            parse(json!({"status": "accepted", "lead_id": ID, "by": "x".repeat(129)})).unwrap_err();
        assert!(e.contains_key("by"), "{e:?}");
        assert!(parse(json!({"status": "accepted", "lead_id": ID, "by": "x".repeat(128)})).is_ok());
    }

    #[test]
    fn qualified_needs_complete_bant_and_recycled_returns_the_lead_to_marketing() {
        let now: DateTime<Utc> = "2026-11-22T13:00:00Z".parse().unwrap();
        let mut lead = routed_lead();
        let partial =
            parse(json!({"status": "qualified", "lead_id": ID, "bant": {"need": "a CRM"}}))
                .unwrap();
        assert!(
            matches!(apply_update(&mut lead, &partial, "env:CRM", "msg_partial", now, &SlaConfig::default()), Err(CrmUpdateError::Fields(f)) if f.contains_key("bant"))
        );
        assert!(lead.bant.is_none());
        let full = parse(json!({"status": "qualified", "lead_id": ID, "by": "anna", "bant": {"budget": {"amount": 1000, "currency": "EUR"}, "authority": "influencer", "need": "a CRM", "timeframe": "later"}})).unwrap();
        apply_update(
            &mut lead,
            &full,
            "env:CRM",
            "msg_full",
            now,
            &SlaConfig::default(),
        )
        .unwrap();
        assert_eq!(lead.stage, Stage::Sql);
        assert_eq!(lead.bant.as_ref().unwrap().by, "anna");
        let recycled =
            parse(json!({"status": "recycled", "lead_id": ID, "reason": "budget next year"}))
                .unwrap();
        let change = apply_update(
            &mut lead,
            &recycled,
            "env:CRM",
            "msg_recycled",
            now,
            &SlaConfig::default(),
        )
        .unwrap();
        assert_eq!(lead.stage, Stage::Recycled);
        assert!(
            lead.assignment.is_none(),
            "routed afresh when it qualifies again"
        );
        assert!(change.change.timeline[0].detail["previous_assignment"].is_object());
        assert_eq!(
            change.change.timeline[0].reason.as_deref(),
            Some("budget next year")
        );
    }

    #[test]
    fn retries_back_off_and_stop_at_the_window() {
        let p = RetryPolicy::DEFAULT;
        let mut elapsed = Duration::zero();
        let mut attempts = 1;
        let mut last = Duration::zero();
        while let Some(d) = p.next_delay(attempts, elapsed, 0.5) {
            assert!(d >= Duration::seconds(1));
            assert!(d <= MAX_RETRY_DELAY);
            if elapsed + d < p.window {
                assert!(d >= last, "delays grow until the window clamps them");
            }
            last = d;
            elapsed += d;
            attempts += 1;
        }
        assert!(elapsed <= p.window, "{elapsed}");
        assert!(
            elapsed >= p.window - Duration::seconds(1),
            "the last retry is at the window's end: {elapsed}"
        );
        assert!((10..=20).contains(&attempts), "{attempts} attempts in 24 h");
        // The first retry waits between half and all of the base.
        assert_eq!(
            p.next_delay(1, Duration::zero(), 0.0),
            Some(Duration::seconds(15))
        );
        assert_eq!(
            p.next_delay(1, Duration::zero(), 0.999_999),
            Some(Duration::milliseconds(29_999))
        );
        assert_eq!(
            p.next_delay(3, Duration::zero(), 0.0),
            Some(Duration::seconds(60))
        );
    }

    proptest! {
        #[test]
        fn retries_never_outlast_the_window(base in 1i64..600, window in 1i64..200_000, jitters in proptest::collection::vec(0.0f64..1.0, 1..60)) {
            let p = RetryPolicy { base: Duration::seconds(base), window: Duration::seconds(window) };
            let mut elapsed = Duration::zero();
            for (i, j) in jitters.iter().enumerate() {
                match p.next_delay(i as u32 + 1, elapsed, *j) {
                    Some(d) => { prop_assert!(d > Duration::zero()); elapsed += d; }
                    None => break,
                }
            }
            prop_assert!(elapsed <= p.window);
        }
    }
}
