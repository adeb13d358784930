//! Capture (docs/domain.md, "The flow"): a valid submission becomes a new lead at Inquiry, or
//! is merged into the lead that has its e-mail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::change::Change;
use crate::events::LeadEvent;
use crate::lead::{Consent, FormLog, Lead, LeadId, SubmissionContext};
use crate::provenance::{FieldSource, FieldWrite, Provenance};
use crate::stage::Stage;
use crate::submission::{ConsentInput, LeadSubmission, CUSTOM_PREFIX, MAX_CUSTOM_FIELDS};
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
    /// Fields that were empty and took the submitted value.
    pub added_fields: Vec<String>,
    /// Fields whose submitted value differs from one the source may not overwrite: kept as
    /// they are, the offer recorded as a `change_proposed` entry.
    pub proposed_fields: Vec<String>,
    /// Custom fields that would have passed the per-lead caps: not kept.
    pub not_kept: Vec<String>,
    /// Whether the submission has its own timeline entries (false once the lead holds
    /// [`MAX_FORM_ENTRIES`] of them: then it is only counted in the lead's form log).
    pub recorded: bool,
    /// `resubmitted` (and `change_proposed`) on the timeline; nothing is announced.
    pub change: Change,
}

/// At most this many custom fields per lead, however many submissions bring them.
pub const MAX_LEAD_CUSTOM_FIELDS: usize = MAX_CUSTOM_FIELDS;
/// At most this many bytes (UTF-8) of custom field names and values per lead: with the
/// bounded standard fields, a lead item stays far below DynamoDB's 400 KB item limit.
pub const MAX_LEAD_CUSTOM_BYTES: usize = 16 * 1024;
/// Resubmissions of one lead recorded with their own timeline entries; later ones are
/// counted in the lead's form log, so public requests cannot grow a lead's history without
/// bound (timeline entries are items of their own, not part of the lead item).
pub const MAX_FORM_ENTRIES: u32 = 100;

/// The bytes a custom field counts against [`MAX_LEAD_CUSTOM_BYTES`].
pub fn custom_field_bytes(name: &str, value: &str) -> usize {
    name.len() + value.len()
}

/// The bytes of all of a lead's custom fields.
pub fn custom_fields_bytes(fields: &BTreeMap<String, String>) -> usize {
    fields.iter().map(|(k, v)| custom_field_bytes(k, v)).sum()
}

/// The provenance key of a custom field.
fn custom_key(name: &str) -> String {
    format!("{CUSTOM_PREFIX}{name}")
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

/// Adds `offered` custom fields to `fields` while the per-lead caps allow, in name order;
/// returns the names that did not fit.
fn admit_custom(
    fields: &mut BTreeMap<String, String>,
    offered: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let mut bytes = custom_fields_bytes(fields);
    let mut not_kept = Vec::new();
    for (name, value) in offered {
        let size = custom_field_bytes(&name, &value);
        if fields.len() >= MAX_LEAD_CUSTOM_FIELDS || bytes + size > MAX_LEAD_CUSTOM_BYTES {
            not_kept.push(custom_key(&name));
            continue;
        }
        bytes += size;
        fields.insert(name, value);
    }
    not_kept
}

impl Lead {
    /// A new lead from a valid submission, at stage Inquiry (it gave an e-mail). Custom
    /// fields beyond the per-lead caps are not kept (the `captured` entry names them).
    pub fn capture(
        id: LeadId,
        s: LeadSubmission,
        ctx: &SubmissionContext,
        at: DateTime<Utc>,
    ) -> Captured {
        let touch = touch_detail(&s);
        let mut custom_fields = BTreeMap::new();
        let not_kept = admit_custom(&mut custom_fields, s.custom_fields);
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
            custom_fields,
            provenance: Provenance::default(),
            form_log: FormLog::default(),
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
        let mut detail = json!({ "stage": Stage::Inquiry, "touch": touch });
        if !not_kept.is_empty() {
            detail["not_kept"] = json!(not_kept);
        }
        let timeline = TimelineEntry {
            at,
            actor: Actor::Form,
            action: TimelineAction::Captured,
            detail,
            reason: None,
        };
        let event = LeadEvent::captured(&lead);
        Captured {
            lead,
            change: Change::entry(timeline).with_event(event),
        }
    }

    /// The contact field a name stands for (the fields a form, sales or a CRM may set).
    fn contact_field(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "first_name" => &mut self.first_name,
            "last_name" => &mut self.last_name,
            "company" => &mut self.company,
            "phone" => &mut self.phone,
            "country" => &mut self.country,
            "postcode" => &mut self.postcode,
            "job_title" => &mut self.job_title,
            "company_size" => &mut self.company_size,
            "industry" => &mut self.industry,
            _ => return None,
        })
    }

    /// `source` offers `value` for a contact field (`first_name`, `company`, `phone`, ...):
    /// applied or only proposed by the field precedence (docs/data-model.md, "Field precedence").
    /// `None` when `field` is not a contact field.
    pub fn offer(&mut self, field: &str, value: String, source: FieldSource) -> Option<FieldWrite> {
        let current = self.contact_field(field)?.clone();
        let write = self
            .provenance
            .decide(field, current.as_deref(), &value, source);
        if write.applies() {
            *self.contact_field(field)? = Some(value);
        }
        self.provenance.settle(field, write, source);
        Some(write)
    }

    /// Merges a resubmission from `source` (a public form: [`FieldSource::Form`]) by the field
    /// precedence: empty fields take the submitted values; a different value for a field the
    /// source may not overwrite stays as it is and is recorded as a proposed change; nothing
    /// is erased. The first touch (source, campaign, UTM, landing page) is kept for
    /// attribution and the new touch goes on the timeline. Consent is replaced only by a newer
    /// consent that was given. Custom fields obey the per-lead caps, and after
    /// [`MAX_FORM_ENTRIES`] recorded resubmissions the lead only counts further ones.
    pub fn merge(
        &mut self,
        s: LeadSubmission,
        source: FieldSource,
        ctx: &SubmissionContext,
        at: DateTime<Utc>,
    ) -> Resubmitted {
        let touch = touch_detail(&s);
        let mut added = Vec::new();
        // What became of each offered value, in the order offered.
        let mut writes: Vec<(String, String, FieldWrite)> = Vec::new();
        for (name, value) in [
            ("first_name", s.first_name),
            ("last_name", s.last_name),
            ("company", s.company),
            ("phone", s.phone),
            ("country", s.country),
            ("postcode", s.postcode),
            ("job_title", s.job_title),
            ("company_size", s.company_size),
            ("industry", s.industry),
        ] {
            if let Some(value) = value {
                if let Some(write) = self.offer(name, value.clone(), source) {
                    writes.push((name.to_owned(), value, write));
                }
            }
        }
        // First touch stays; a missing one is filled.
        for (name, slot, new) in [
            ("source", &mut self.source, s.source),
            ("campaign", &mut self.campaign, s.campaign),
            (
                "landing_page_url",
                &mut self.landing_page_url,
                s.landing_page_url,
            ),
            // No visitor_id: the visitor id binds tracked events to the lead, and only the
            // submission that creates the lead may set it (it also gets the visitor token). A
            // later anonymous form naming someone's e-mail must not attach its own cookie id
            // to that lead and then score events for it.
        ] {
            if slot.is_none() && new.is_some() {
                *slot = new;
                writes.push((name.to_owned(), String::new(), FieldWrite::Filled));
            }
        }
        if self.utm.is_empty() && !s.utm.is_empty() {
            self.utm = s.utm;
            writes.push(("utm".to_owned(), String::new(), FieldWrite::Filled));
        }
        let mut fresh = Vec::new();
        let mut not_kept = Vec::new();
        for (name, value) in s.custom_fields {
            let key = custom_key(&name);
            let Some(current) = self.custom_fields.get(&name) else {
                fresh.push((name, value));
                continue;
            };
            let write = self.provenance.decide(&key, Some(current), &value, source);
            // A longer replacement must fit the cap like a new field.
            let grown = custom_fields_bytes(&self.custom_fields) - current.len() + value.len();
            if write.applies() && grown > MAX_LEAD_CUSTOM_BYTES {
                not_kept.push(key);
                continue;
            }
            if write.applies() {
                self.custom_fields.insert(name, value.clone());
            }
            self.provenance.settle(&key, write, source);
            writes.push((key, value, write));
        }
        let mut overwritten = Vec::new();
        let mut proposed = serde_json::Map::new();
        for (name, value, write) in writes {
            match write {
                FieldWrite::Filled => added.push(name),
                FieldWrite::Overwritten => overwritten.push(name),
                FieldWrite::Proposed => {
                    proposed.insert(name, value.into());
                }
                FieldWrite::Unchanged => {}
            }
        }
        let names: Vec<String> = fresh.iter().map(|(n, _)| custom_key(n)).collect();
        not_kept.extend(admit_custom(&mut self.custom_fields, fresh));
        added.extend(names.into_iter().filter(|n| !not_kept.contains(n)));
        if let Some(c) = s.consent.as_ref().filter(|c| c.given) {
            self.consent = Some(consent_from(c, ctx, at));
            added.push("consent".to_owned());
        }
        self.updated_at = at;

        let proposed_fields: Vec<String> = proposed.keys().cloned().collect();
        let recorded = self.form_log.recorded < MAX_FORM_ENTRIES;
        let mut change = Change::default();
        if recorded {
            self.form_log.recorded += 1;
            let mut detail = json!({ "added_fields": added, "touch": touch });
            if !overwritten.is_empty() {
                detail["overwritten_fields"] = json!(overwritten);
            }
            if !not_kept.is_empty() {
                detail["not_kept"] = json!(not_kept);
            }
            change.timeline.push(TimelineEntry {
                at,
                actor: Actor::Form,
                action: TimelineAction::Resubmitted,
                detail,
                reason: None,
            });
            if !proposed.is_empty() {
                change.timeline.push(TimelineEntry {
                    at,
                    actor: Actor::Form,
                    action: TimelineAction::ChangeProposed,
                    detail: json!({ "fields": proposed_fields, "proposed": proposed }),
                    reason: Some(
                        "field precedence: the submission's source may not change these fields"
                            .to_owned(),
                    ),
                });
            }
        } else {
            self.form_log.folded += 1;
            self.form_log.last_folded_at = Some(at);
        }
        Resubmitted {
            added_fields: added,
            proposed_fields,
            not_kept,
            recorded,
            change,
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

    fn lead_from(pairs: &[(&str, &str)]) -> Lead {
        Lead::capture(
            LeadId::new_at(at("2026-01-01T00:00:00Z")),
            submission(pairs),
            &SubmissionContext::default(),
            at("2026-01-01T00:00:00Z"),
        )
        .lead
    }

    fn resubmit(lead: &mut Lead, pairs: &[(&str, &str)]) -> Resubmitted {
        lead.merge(
            submission(pairs),
            FieldSource::Form,
            &SubmissionContext::default(),
            at("2026-01-02T00:00:00Z"),
        )
    }

    #[test]
    fn a_form_fills_empty_fields_and_only_proposes_changes() {
        let mut lead = lead_from(&[
            ("email", "jo@example.com"),
            ("company", "Old GmbH"),
            ("phone", "+49 1"),
            ("utm_source", "google"),
        ]);
        let r = resubmit(
            &mut lead,
            &[
                ("email", "jo@example.com"),
                ("company", "New AG"),
                ("job_title", "CTO"),
                ("utm_source", "newsletter"),
            ],
        );
        assert_eq!(r.added_fields, vec!["job_title"]);
        assert_eq!(r.proposed_fields, vec!["company"]);
        assert_eq!(lead.company.as_deref(), Some("Old GmbH"), "not overwritten");
        assert_eq!(
            lead.job_title.as_deref(),
            Some("CTO"),
            "an empty field is filled"
        );
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
        let actions: Vec<_> = r.change.timeline.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [TimelineAction::Resubmitted, TimelineAction::ChangeProposed]
        );
        assert_eq!(
            r.change.timeline[0].detail["touch"]["utm"]["source"],
            "newsletter"
        );
        let proposal = &r.change.timeline[1].detail;
        assert_eq!(proposal["fields"], json!(["company"]));
        assert_eq!(proposal["proposed"]["company"], "New AG");
        assert_eq!(lead.updated_at, at("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn a_resubmission_never_attaches_a_visitor_id() {
        let mut lead = lead_from(&[("email", "jo@example.com")]);
        assert_eq!(lead.visitor_id, None);
        let r = resubmit(
            &mut lead,
            &[("email", "jo@example.com"), ("visitor_id", "v-attacker")],
        );
        assert_eq!(lead.visitor_id, None, "the lead's events stay its own");
        assert!(!r.added_fields.iter().any(|f| f == "visitor_id"));

        let mut own = lead_from(&[("email", "jo@example.com"), ("visitor_id", "v-jo")]);
        resubmit(
            &mut own,
            &[("email", "jo@example.com"), ("visitor_id", "v-attacker")],
        );
        assert_eq!(own.visitor_id.as_deref(), Some("v-jo"));
    }

    #[test]
    fn fields_set_by_sales_or_a_crm_survive_any_form() {
        let mut lead = lead_from(&[("email", "jo@example.com"), ("first_name", "Jo")]);
        assert_eq!(
            lead.offer("phone", "+49 30 1".into(), FieldSource::Sales),
            Some(FieldWrite::Filled)
        );
        assert_eq!(
            lead.offer("first_name", "Johanna".into(), FieldSource::Crm),
            Some(FieldWrite::Overwritten),
            "the CRM outranks the form"
        );
        let r = resubmit(
            &mut lead,
            &[
                ("email", "jo@example.com"),
                ("first_name", "Mallory"),
                ("phone", "+1 555 0100"),
            ],
        );
        assert_eq!(lead.first_name.as_deref(), Some("Johanna"));
        assert_eq!(lead.phone.as_deref(), Some("+49 30 1"));
        assert_eq!(r.proposed_fields, vec!["first_name", "phone"]);
        assert_eq!(lead.provenance.of("phone"), FieldSource::Sales);
        assert_eq!(lead.provenance.of("first_name"), FieldSource::Crm);
        assert_eq!(
            lead.offer("phone", "+49 30 2".into(), FieldSource::Sales),
            Some(FieldWrite::Overwritten),
            "sales corrects its own value"
        );
        assert_eq!(lead.offer("bant", "x".into(), FieldSource::Sales), None);
    }

    #[test]
    fn a_confirmed_submission_outranks_a_plain_form() {
        let mut lead = lead_from(&[("email", "jo@example.com"), ("company", "Typo Gmbh")]);
        let r = lead.merge(
            submission(&[("email", "jo@example.com"), ("company", "Right GmbH")]),
            FieldSource::ConfirmedForm,
            &SubmissionContext::default(),
            at("2026-01-02T00:00:00Z"),
        );
        assert_eq!(lead.company.as_deref(), Some("Right GmbH"));
        assert!(r.proposed_fields.is_empty());
        assert_eq!(
            r.change.timeline[0].detail["overwritten_fields"],
            json!(["company"])
        );
        let r = resubmit(
            &mut lead,
            &[("email", "jo@example.com"), ("company", "Typo Gmbh")],
        );
        assert_eq!(lead.company.as_deref(), Some("Right GmbH"));
        assert_eq!(r.proposed_fields, vec!["company"]);
    }

    #[test]
    fn custom_fields_are_capped_per_lead_in_count_and_size() {
        let mut lead = lead_from(&[("email", "jo@example.com")]);
        let value = "v".repeat(900);
        for round in 0..30 {
            let pairs: Vec<(String, String)> = (0..10)
                .map(|i| (format!("custom_fields.f{round}_{i}"), value.clone()))
                .chain([("email".to_owned(), "jo@example.com".to_owned())])
                .collect();
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            resubmit(&mut lead, &pairs);
            assert!(custom_fields_bytes(&lead.custom_fields) <= MAX_LEAD_CUSTOM_BYTES);
            assert!(lead.custom_fields.len() <= MAX_LEAD_CUSTOM_FIELDS);
        }
        let size = serde_json::to_vec(&lead).unwrap().len();
        assert!(size < 32 * 1024, "the lead stays small: {size} bytes");

        let mut many = lead_from(&[("email", "jo@example.com")]);
        for round in 0..3 {
            let pairs: Vec<(String, String)> = (0..30)
                .map(|i| (format!("custom_fields.n{round}_{i:02}"), "x".to_owned()))
                .chain([("email".to_owned(), "jo@example.com".to_owned())])
                .collect();
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = resubmit(&mut many, &pairs);
            if round == 2 {
                assert_eq!(r.not_kept.len(), 30, "the cap of 50 was reached");
                assert_eq!(
                    r.change.timeline[0].detail["not_kept"]
                        .as_array()
                        .unwrap()
                        .len(),
                    30
                );
            }
        }
        assert_eq!(many.custom_fields.len(), MAX_LEAD_CUSTOM_FIELDS);
    }

    #[test]
    fn a_known_custom_field_is_not_rewritten_by_a_form() {
        let mut lead = lead_from(&[("email", "jo@example.com"), ("custom_fields.seats", "12")]);
        let r = resubmit(
            &mut lead,
            &[("email", "jo@example.com"), ("custom_fields.seats", "9000")],
        );
        assert_eq!(lead.custom_fields["seats"], "12");
        assert_eq!(r.proposed_fields, vec!["custom_fields.seats"]);
    }

    #[test]
    fn resubmissions_after_the_cap_are_counted_not_recorded() {
        let mut lead = lead_from(&[("email", "jo@example.com"), ("company", "A")]);
        for i in 0..MAX_FORM_ENTRIES + 5 {
            let company = format!("C{i}");
            let r = resubmit(
                &mut lead,
                &[("email", "jo@example.com"), ("company", &company)],
            );
            assert_eq!(r.recorded, i < MAX_FORM_ENTRIES);
            assert_eq!(r.change.timeline.is_empty(), i >= MAX_FORM_ENTRIES);
        }
        assert_eq!(lead.form_log.recorded, MAX_FORM_ENTRIES);
        assert_eq!(lead.form_log.folded, 5);
        assert_eq!(
            lead.form_log.last_folded_at,
            Some(at("2026-01-02T00:00:00Z"))
        );
        assert_eq!(lead.company.as_deref(), Some("A"));
    }

    #[test]
    fn a_lead_stored_before_provenance_reads_as_all_form() {
        let lead = lead_from(&[("email", "jo@example.com"), ("company", "A")]);
        let mut json = serde_json::to_value(&lead).unwrap();
        assert!(json.get("provenance").is_none() && json.get("form_log").is_none());
        json.as_object_mut().unwrap().remove("provenance");
        let back: Lead = serde_json::from_value(json).unwrap();
        assert_eq!(back.provenance.of("company"), FieldSource::Form);
        assert_eq!(back.form_log, FormLog::default());
    }

    #[test]
    fn merge_of_the_same_form_changes_nothing() {
        let pairs = [("email", "jo@example.com"), ("company", "ACME")];
        let mut lead = lead_from(&pairs);
        let r = resubmit(&mut lead, &pairs);
        assert!(r.added_fields.is_empty() && r.proposed_fields.is_empty());
        assert_eq!(r.change.timeline.len(), 1, "only the resubmission itself");
    }

    proptest::proptest! {
        /// No sequence of public submissions changes a set field or grows the lead's custom
        /// fields past the caps.
        #[test]
        fn no_form_sequence_rewrites_or_bloats_a_lead(
            rounds in proptest::collection::vec(
                proptest::collection::btree_map("[a-e]{1,2}", "[a-z]{0,900}", 0..12), 1..40),
        ) {
            let mut lead = lead_from(&[("email", "jo@example.com"), ("company", "Kept AG")]);
            for fields in rounds {
                let mut pairs: Vec<(String, String)> = fields
                    .into_iter()
                    .map(|(k, v)| (format!("custom_fields.{k}"), v))
                    .collect();
                pairs.push(("email".into(), "jo@example.com".into()));
                pairs.push(("company".into(), "Other".into()));
                let before = lead.custom_fields.clone();
                let pairs: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                resubmit(&mut lead, &pairs);
                for (k, v) in &before {
                    proptest::prop_assert_eq!(lead.custom_fields.get(k), Some(v));
                }
                proptest::prop_assert!(custom_fields_bytes(&lead.custom_fields) <= MAX_LEAD_CUSTOM_BYTES);
                proptest::prop_assert!(lead.custom_fields.len() <= MAX_LEAD_CUSTOM_FIELDS);
                proptest::prop_assert_eq!(lead.company.as_deref(), Some("Kept AG"));
            }
        }
    }
}
