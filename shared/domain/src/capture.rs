//! Capture (docs/domain.md, "The flow"): a valid submission becomes a new lead at Inquiry, or
//! is merged into the lead that has its e-mail.

use chrono::{DateTime, Utc};

use crate::change::Change;
use crate::events::LeadEvent;
use crate::lead::{Consent, Lead, LeadId, SubmissionContext};
use crate::stage::Stage;
use crate::submission::{ConsentInput, LeadSubmission};
use crate::timeline::{Actor, TimelineAction, TimelineEntry};

/// The result of capturing a new lead: the lead and what to record and announce about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub lead: Lead,
    /// `captured` on the timeline, `LeadCaptured` announced.
    pub change: Change,
}

/// The result of merging a resubmission into a known lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Resubmitted {
    /// Names of the fields whose value changed (empty when the form said nothing new).
    pub changed_fields: Vec<&'static str>,
    /// `resubmitted` on the timeline (with the new touch); nothing is announced.
    pub change: Change,
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
            assignment_history: Vec::new(),
            crm: None,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        let timeline = TimelineEntry {
            at,
            actor: Actor::Form,
            action: TimelineAction::Captured,
            detail: serde_json::json!({ "stage": Stage::Inquiry, "touch": touch }),
            reason: None,
        };
        let event = LeadEvent::LeadCaptured {
            lead: Box::new(lead.clone()),
        };
        Captured {
            lead,
            change: Change::entry(timeline).with_event(event),
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
            action: TimelineAction::Resubmitted,
            detail: serde_json::json!({ "changed_fields": changed, "touch": touch }),
            reason: None,
        };
        Resubmitted {
            changed_fields: changed,
            change: Change::entry(timeline),
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
        assert_eq!(c.change.timeline[0].action, TimelineAction::Captured);
        assert!(matches!(
            c.change.events[..],
            [LeadEvent::LeadCaptured { .. }]
        ));
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
        assert_eq!(
            r.change.timeline[0].detail["touch"]["utm"]["source"],
            "newsletter"
        );
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
}
