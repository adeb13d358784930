use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::LeadEvent;
use crate::stage::Stage;
use crate::submission::{ConsentInput, LeadSubmission};
use crate::timeline::{Actor, TimelineEntry};
use crate::Email;

/// A lead's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeadId(Uuid);

impl LeadId {
    pub fn new_at(at: DateTime<Utc>) -> Self {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.timestamp().max(0) as u64,
            at.timestamp_subsec_nanos(),
        );
        Self(Uuid::new_v7(ts))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for LeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for LeadId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// UTM parameters of the touch that brought the lead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self == &Utm::default()
    }
}

/// Proof of consent, as kept with the lead (GDPR art. 7(1): the controller must be able to show
/// that the person consented, to what, and when).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub given: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Where a submission came from on the wire: kept as consent proof, never logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmissionContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A person who showed interest, with everything known about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: LeadId,
    pub email: Email,
    pub stage: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// First-touch attribution: set at capture, filled later only where it was empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    /// What qualification last decided: score, grade, temperature, by which config version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification: Option<Qualification>,
    /// Budget, Authority, Need, Time, as inside sales found them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bant: Option<crate::bant::Bant>,
    /// Who works the lead, and why (routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<crate::routing::Assignment>,
    /// The lead's record in the CRM (external id, last status), from the CRM's callbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<crate::crm::CrmRecord>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version: 1 at capture, +1 on every stored change.
    pub version: u64,
}

/// The lead's standing as qualification last saw it: told honestly to whoever works the lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qualification {
    pub score: crate::scoring::Points,
    pub band: crate::scoring::ScoreBand,
    pub grade: crate::scoring::Grade,
    pub temperature: crate::scoring::Temperature,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    pub config_version: u64,
    pub at: DateTime<Utc>,
}

/// The result of capturing a new lead: the lead and what to record and announce about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub lead: Lead,
    pub timeline: TimelineEntry,
    pub event: LeadEvent,
}

/// The result of merging a resubmission into a known lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Resubmitted {
    /// Names of the fields whose value changed (empty when the form said nothing new).
    pub changed_fields: Vec<&'static str>,
    pub timeline: TimelineEntry,
}

fn consent_from(input: &ConsentInput, ctx: &SubmissionContext, at: DateTime<Utc>) -> Consent {
    Consent {
        given: input.given,
        text: input.text.clone(),
        version: input.version.clone(),
        at,
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
    }
}

/// The touch of a submission, as recorded on the timeline (attribution of later visits).
fn touch_detail(s: &LeadSubmission) -> serde_json::Value {
    let mut touch = serde_json::Map::new();
    for (k, v) in [
        ("source", &s.source),
        ("campaign", &s.campaign),
        ("landing_page_url", &s.landing_page_url),
    ] {
        if let Some(v) = v {
            touch.insert(k.into(), v.clone().into());
        }
    }
    if !s.utm.is_empty() {
        touch.insert(
            "utm".into(),
            serde_json::to_value(&s.utm).unwrap_or_default(),
        );
    }
    serde_json::Value::Object(touch)
}

impl Lead {
    /// A new lead from a valid submission, at stage Inquiry (it gave an e-mail).
    pub fn capture(
        id: LeadId,
        s: LeadSubmission,
        ctx: &SubmissionContext,
        at: DateTime<Utc>,
    ) -> Captured {
        let touch = touch_detail(&s);
        let lead = Lead {
            id,
            email: s.email,
            stage: Stage::Inquiry,
            first_name: s.first_name,
            last_name: s.last_name,
            company: s.company,
            phone: s.phone,
            country: s.country,
            postcode: s.postcode,
            job_title: s.job_title,
            company_size: s.company_size,
            industry: s.industry,
            source: s.source,
            campaign: s.campaign,
            utm: s.utm,
            landing_page_url: s.landing_page_url,
            visitor_id: s.visitor_id,
            custom_fields: s.custom_fields,
            consent: s.consent.as_ref().map(|c| consent_from(c, ctx, at)),
            qualification: None,
            bant: None,
            assignment: None,
            crm: None,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        let timeline = TimelineEntry {
            at,
            actor: Actor::Form,
            action: "captured".into(),
            detail: serde_json::json!({ "stage": Stage::Inquiry, "touch": touch }),
            reason: None,
        };
        let event = LeadEvent::LeadCaptured {
            lead: Box::new(lead.clone()),
        };
        Captured {
            lead,
            timeline,
            event,
        }
    }

    /// Merges a resubmission: new non-empty values replace old ones, nothing is erased, and the
    /// first touch (source, campaign, UTM, landing page) is kept for attribution; the new touch
    /// goes on the timeline. Consent is replaced only by a newer consent that was given.
    pub fn merge(
        &mut self,
        s: LeadSubmission,
        ctx: &SubmissionContext,
        at: DateTime<Utc>,
    ) -> Resubmitted {
        let touch = touch_detail(&s);
        let mut changed = Vec::new();
        let mut take = |name: &'static str, slot: &mut Option<String>, new: Option<String>| {
            if let Some(new) = new {
                if slot.as_deref() != Some(new.as_str()) {
                    *slot = Some(new);
                    changed.push(name);
                }
            }
        };
        take("first_name", &mut self.first_name, s.first_name);
        take("last_name", &mut self.last_name, s.last_name);
        take("company", &mut self.company, s.company);
        take("phone", &mut self.phone, s.phone);
        take("country", &mut self.country, s.country);
        take("postcode", &mut self.postcode, s.postcode);
        take("job_title", &mut self.job_title, s.job_title);
        take("company_size", &mut self.company_size, s.company_size);
        take("industry", &mut self.industry, s.industry);
        // First touch stays; a missing one is filled.
        let first_touch_missing = |slot: &Option<String>| slot.is_none();
        if first_touch_missing(&self.source) {
            take("source", &mut self.source, s.source);
        }
        if first_touch_missing(&self.campaign) {
            take("campaign", &mut self.campaign, s.campaign);
        }
        if first_touch_missing(&self.landing_page_url) {
            take(
                "landing_page_url",
                &mut self.landing_page_url,
                s.landing_page_url,
            );
        }
        if first_touch_missing(&self.visitor_id) {
            take("visitor_id", &mut self.visitor_id, s.visitor_id);
        }
        if self.utm.is_empty() && !s.utm.is_empty() {
            self.utm = s.utm;
            changed.push("utm");
        }
        let mut custom_changed = false;
        for (k, v) in s.custom_fields {
            if self.custom_fields.get(&k) != Some(&v) {
                self.custom_fields.insert(k, v);
                custom_changed = true;
            }
        }
        if custom_changed {
            changed.push("custom_fields");
        }
        if let Some(c) = s.consent.as_ref().filter(|c| c.given) {
            self.consent = Some(consent_from(c, ctx, at));
            changed.push("consent");
        }
        self.updated_at = at;
        let timeline = TimelineEntry {
            at,
            actor: Actor::Form,
            action: "resubmitted".into(),
            detail: serde_json::json!({ "changed_fields": changed, "touch": touch }),
            reason: None,
        };
        Resubmitted {
            changed_fields: changed,
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::{RawSubmission, SubmissionRules};

    fn submission(pairs: &[(&str, &str)]) -> LeadSubmission {
        let raw: RawSubmission = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SubmissionRules::default()
            .validate(&raw)
            .expect("valid submission")
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn capture_starts_at_inquiry_with_consent_proof() {
        let s = submission(&[
            ("email", "Jo@Example.com"),
            ("consent", "on"),
            ("consent_text", "Yes, mail me"),
        ]);
        let ctx = SubmissionContext {
            ip: Some("203.0.113.9".into()),
            user_agent: Some("UA".into()),
        };
        let c = Lead::capture(
            LeadId::new_at(at("2026-01-01T00:00:00Z")),
            s,
            &ctx,
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(c.lead.stage, Stage::Inquiry);
        assert_eq!(c.lead.email.as_str(), "jo@example.com");
        let consent = c.lead.consent.unwrap();
        assert!(consent.given);
        assert_eq!(consent.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(consent.text.as_deref(), Some("Yes, mail me"));
        assert_eq!(c.timeline.action, "captured");
        assert!(matches!(c.event, LeadEvent::LeadCaptured { .. }));
    }

    #[test]
    fn merge_fills_and_replaces_but_never_erases_or_moves_first_touch() {
        let first = submission(&[
            ("email", "jo@example.com"),
            ("company", "Old GmbH"),
            ("phone", "+49 1"),
            ("utm_source", "google"),
        ]);
        let ctx = SubmissionContext::default();
        let mut lead = Lead::capture(
            LeadId::new_at(at("2026-01-01T00:00:00Z")),
            first,
            &ctx,
            at("2026-01-01T00:00:00Z"),
        )
        .lead;
        let again = submission(&[
            ("email", "jo@example.com"),
            ("company", "New AG"),
            ("job_title", "CTO"),
            ("utm_source", "newsletter"),
        ]);
        let r = lead.merge(again, &ctx, at("2026-01-02T00:00:00Z"));
        assert_eq!(r.changed_fields, vec!["company", "job_title"]);
        assert_eq!(lead.company.as_deref(), Some("New AG"));
        assert_eq!(
            lead.phone.as_deref(),
            Some("+49 1"),
            "an absent field never erases"
        );
        assert_eq!(
            lead.utm.source.as_deref(),
            Some("google"),
            "first touch is kept"
        );
        assert_eq!(r.timeline.detail["touch"]["utm"]["source"], "newsletter");
        assert_eq!(lead.updated_at, at("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn merge_of_the_same_form_changes_nothing() {
        let pairs = [("email", "jo@example.com"), ("company", "ACME")];
        let ctx = SubmissionContext::default();
        let mut lead = Lead::capture(
            LeadId::new_at(at("2026-01-01T00:00:00Z")),
            submission(&pairs),
            &ctx,
            at("2026-01-01T00:00:00Z"),
        )
        .lead;
        let r = lead.merge(submission(&pairs), &ctx, at("2026-01-02T00:00:00Z"));
        assert!(r.changed_fields.is_empty());
    }

    #[test]
    fn lead_ids_sort_by_time() {
        let a = LeadId::new_at(at("2026-01-01T00:00:00Z"));
        let b = LeadId::new_at(at("2026-01-01T00:00:01Z"));
        assert!(a < b);
        assert_eq!(a.to_string().parse::<LeadId>().unwrap(), a);
    }
}
