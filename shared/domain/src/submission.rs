//! What a form or API client sends, and the rules that turn it into a valid [`LeadSubmission`].

use std::collections::{BTreeMap, BTreeSet};

use crate::email::{Email, EmailError};
use crate::fields::FieldErrors;
use crate::lead::Utm;

/// A submission as it arrives: field name → value, in the order sent. JSON bodies and
/// urlencoded forms both decode to this, so both obey one set of rules.
pub type RawSubmission = Vec<(String, String)>;

pub const MAX_CUSTOM_FIELDS: usize = 50;
pub const MAX_CUSTOM_NAME_LEN: usize = 64;
pub const MAX_CUSTOM_VALUE_LEN: usize = 1000;
pub const CUSTOM_PREFIX: &str = "custom_fields.";

/// The standard fields and their longest allowed length in characters.
const TEXT_FIELDS: &[(&str, usize)] = &[
    ("first_name", 100),
    ("last_name", 100),
    ("company", 200),
    ("phone", 40),
    ("country", 64),
    ("postcode", 20),
    ("job_title", 150),
    ("company_size", 50),
    ("industry", 100),
    ("source", 100),
    ("campaign", 200),
    ("utm_source", 200),
    ("utm_medium", 200),
    ("utm_campaign", 200),
    ("utm_term", 200),
    ("utm_content", 200),
    ("landing_page_url", 2048),
    ("visitor_id", 128),
    ("consent_text", 2000),
    ("consent_version", 100),
];

/// Names that mean "yes" for a consent checkbox or JSON boolean.
const YES: &[&str] = &["1", "true", "on", "yes", "y"];
const NO: &[&str] = &["", "0", "false", "off", "no", "n"];

/// What the person agreed to, as sent with the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentInput {
    pub given: bool,
    pub text: Option<String>,
    pub version: Option<String>,
}

/// A valid submission, ready to become (or update) a lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadSubmission {
    pub email: Email,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub postcode: Option<String>,
    pub job_title: Option<String>,
    pub company_size: Option<String>,
    pub industry: Option<String>,
    pub source: Option<String>,
    pub campaign: Option<String>,
    pub utm: Utm,
    pub landing_page_url: Option<String>,
    pub visitor_id: Option<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub consent: Option<ConsentInput>,
}

/// Validation rules that are configuration, not code: which fields a form must carry, and which
/// field names are control fields (honeypot, redirect) rather than data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRules {
    pub required: BTreeSet<String>,
    pub control_fields: BTreeSet<String>,
}

impl Default for SubmissionRules {
    fn default() -> Self {
        Self {
            required: BTreeSet::from(["email".to_owned()]),
            control_fields: BTreeSet::new(),
        }
    }
}

/// The field names a submission may carry besides custom fields.
pub fn known_field(name: &str) -> bool {
    name == "email" || name == "consent" || TEXT_FIELDS.iter().any(|(n, _)| *n == name)
}

fn custom_name(name: &str) -> Option<&str> {
    name.strip_prefix(CUSTOM_PREFIX).or_else(|| {
        name.strip_prefix("custom_fields[")
            .and_then(|n| n.strip_suffix(']'))
    })
}

impl SubmissionRules {
    /// Parses the configured list of required fields (comma separated); `email` is always required.
    pub fn with_required(list: &str) -> Result<Self, String> {
        let mut rules = Self::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !known_field(name) {
                return Err(format!("unknown required field {name:?}"));
            }
            rules.required.insert(name.to_owned());
        }
        Ok(rules)
    }

    /// Validates every field and reports every problem at once.
    pub fn validate(&self, raw: &RawSubmission) -> Result<LeadSubmission, FieldErrors> {
        let mut errors = FieldErrors::new();
        // Later values of a repeated field (a group of checkboxes) join the earlier ones.
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut custom: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in raw {
            if name.starts_with('_') || self.control_fields.contains(name) {
                continue;
            }
            let slot = if let Some(c) = custom_name(name) {
                if c.is_empty()
                    || c.chars().count() > MAX_CUSTOM_NAME_LEN
                    || !c
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
                {
                    errors.insert(name.clone(), format!("custom field names are 1 to {MAX_CUSTOM_NAME_LEN} characters of A-Z, a-z, 0-9, _ - ."));
                    continue;
                }
                custom.entry(c.to_owned())
            } else if known_field(name) {
                fields.entry(name.clone())
            } else {
                errors.insert(
                    name.clone(),
                    format!("unknown field; custom fields are sent as {CUSTOM_PREFIX}<name>"),
                );
                continue;
            };
            let v = value.trim();
            slot.and_modify(|old| {
                if !v.is_empty() {
                    if !old.is_empty() {
                        old.push_str(", ");
                    }
                    old.push_str(v);
                }
            })
            .or_insert_with(|| v.to_owned());
        }

        for name in &self.required {
            if fields.get(name).is_none_or(|v| v.is_empty()) {
                errors.insert(name.clone(), "is required".into());
            }
        }

        let email = match fields.get("email").map(String::as_str) {
            Some(raw) => Email::parse(raw).map_err(|e| match e {
                EmailError::Empty => "is required".to_owned(),
                e => e.to_string(),
            }),
            None => Err("is required".to_owned()),
        };
        let email = email.map_err(|e| errors.insert("email".into(), e)).ok();

        let mut text = |name: &str| -> Option<String> {
            let value = fields.get(name).filter(|v| !v.is_empty())?;
            let max = TEXT_FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, m)| *m);
            let allow_newlines = name == "consent_text";
            if value.chars().count() > max {
                errors.insert(name.into(), format!("is longer than {max} characters"));
                return None;
            }
            if value.chars().any(|c| {
                c.is_control() && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t'))
            }) {
                errors.insert(name.into(), "contains control characters".into());
                return None;
            }
            Some(value.clone())
        };

        let first_name = text("first_name");
        let last_name = text("last_name");
        let company = text("company");
        let phone = text("phone");
        let country = text("country");
        let postcode = text("postcode");
        let job_title = text("job_title");
        let company_size = text("company_size");
        let industry = text("industry");
        let source = text("source");
        let campaign = text("campaign");
        let utm = Utm {
            source: text("utm_source"),
            medium: text("utm_medium"),
            campaign: text("utm_campaign"),
            term: text("utm_term"),
            content: text("utm_content"),
        };
        let landing_page_url = text("landing_page_url");
        let visitor_id = text("visitor_id");
        let consent_text = text("consent_text");
        let consent_version = text("consent_version");

        if let Some(p) = &phone {
            let digits = p.chars().filter(char::is_ascii_digit).count();
            if digits < 3
                || !p
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-()/.".contains(c))
            {
                errors.insert(
                    "phone".into(),
                    "must be a phone number: digits, spaces and + - ( ) / .".into(),
                );
            }
        }
        let country = country.and_then(|c| {
            if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                Some(c.to_ascii_uppercase())
            } else {
                errors.insert(
                    "country".into(),
                    "must be an ISO 3166-1 alpha-2 code such as DE".into(),
                );
                None
            }
        });
        if let Some(u) = &landing_page_url {
            match url::Url::parse(u) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
                _ => {
                    errors.insert(
                        "landing_page_url".into(),
                        "must be an absolute http(s) URL".into(),
                    );
                }
            }
        }
        if let Some(v) = &visitor_id {
            if !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
            {
                errors.insert(
                    "visitor_id".into(),
                    "may contain only A-Z, a-z, 0-9 and - _ . :".into(),
                );
            }
        }

        let consent = match fields.get("consent").map(|v| v.to_ascii_lowercase()) {
            None => None,
            Some(v) if YES.contains(&v.as_str()) => Some(true),
            Some(v) if NO.contains(&v.as_str()) => Some(false),
            Some(_) => {
                errors.insert("consent".into(), "must be true or false".into());
                None
            }
        };
        if self.required.contains("consent") && consent != Some(true) {
            errors.insert("consent".into(), "is required".into());
        }
        let consent = consent.map(|given| ConsentInput {
            given,
            text: consent_text,
            version: consent_version,
        });

        if custom.len() > MAX_CUSTOM_FIELDS {
            errors.insert(
                "custom_fields".into(),
                format!("at most {MAX_CUSTOM_FIELDS} custom fields"),
            );
        }
        custom.retain(|name, value| {
            if value.chars().count() > MAX_CUSTOM_VALUE_LEN {
                errors.insert(
                    format!("{CUSTOM_PREFIX}{name}"),
                    format!("is longer than {MAX_CUSTOM_VALUE_LEN} characters"),
                );
            } else if value.chars().any(char::is_control) {
                errors.insert(
                    format!("{CUSTOM_PREFIX}{name}"),
                    "contains control characters".into(),
                );
            }
            !value.is_empty()
        });

        match email {
            Some(email) if errors.is_empty() => Ok(LeadSubmission {
                email,
                first_name,
                last_name,
                company,
                phone,
                country,
                postcode,
                job_title,
                company_size,
                industry,
                source,
                campaign,
                utm,
                landing_page_url,
                visitor_id,
                custom_fields: custom,
                consent,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSubmission {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_full_form_validates() {
        let s = SubmissionRules::default()
            .validate(&raw(&[
                ("email", "Jörg.Müller@Beispiel.de"),
                ("first_name", "Jörg"),
                ("country", "de"),
                ("phone", "+49 (30) 123-456"),
                ("utm_source", "google"),
                ("landing_page_url", "https://example.com/lp?x=1"),
                ("custom_fields.interest", "CRM"),
                ("custom_fields[interest]", "ERP"),
                ("consent", "on"),
                ("_redirect", "https://example.com/thanks"),
            ]))
            .unwrap();
        assert_eq!(s.email.as_str(), "jörg.müller@beispiel.de");
        assert_eq!(s.country.as_deref(), Some("DE"));
        assert_eq!(s.custom_fields["interest"], "CRM, ERP");
        assert_eq!(s.utm.source.as_deref(), Some("google"));
        assert!(s.consent.unwrap().given);
    }

    #[test]
    fn every_problem_is_named() {
        let long = "x".repeat(101);
        let errs = SubmissionRules::with_required("email,company")
            .unwrap()
            .validate(&raw(&[
                ("email", "not-an-email"),
                ("first_name", &long),
                ("country", "Germany"),
                ("phone", "call me"),
                ("landing_page_url", "javascript:alert(1)"),
                ("consent", "maybe"),
                ("favourite_colour", "blue"),
            ]))
            .unwrap_err();
        let names: Vec<&str> = errs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "company",
                "consent",
                "country",
                "email",
                "favourite_colour",
                "first_name",
                "landing_page_url",
                "phone"
            ]
        );
        assert_eq!(errs["company"], "is required");
        assert_eq!(errs["first_name"], "is longer than 100 characters");
    }

    #[test]
    fn missing_email_is_required() {
        let errs = SubmissionRules::default()
            .validate(&raw(&[("first_name", "A")]))
            .unwrap_err();
        assert_eq!(errs["email"], "is required");
        let errs = SubmissionRules::default()
            .validate(&raw(&[("email", "  ")]))
            .unwrap_err();
        assert_eq!(errs["email"], "is required");
    }

    #[test]
    fn control_fields_are_not_data() {
        let mut rules = SubmissionRules::default();
        rules.control_fields.insert("website".into());
        let s = rules
            .validate(&raw(&[("email", "a@b.de"), ("website", "")]))
            .unwrap();
        assert!(s.custom_fields.is_empty());
    }

    #[test]
    fn unknown_required_field_is_a_config_error() {
        assert!(SubmissionRules::with_required("email,shoe_size").is_err());
    }

    proptest! {
        #[test]
        fn validation_never_panics(pairs in proptest::collection::vec(("[a-z_.\\[\\]]{0,20}", "\\PC{0,300}"), 0..30)) {
            let raw: RawSubmission = pairs;
            let _ = SubmissionRules::default().validate(&raw);
        }

        #[test]
        fn accepted_values_respect_their_limits(name in "\\PC{0,150}", company in "\\PC{0,250}") {
            let r = SubmissionRules::default().validate(&raw(&[("email", "a@b.de"), ("first_name", &name), ("company", &company)]));
            if let Ok(s) = r {
                prop_assert!(s.first_name.as_ref().is_none_or(|v| v.chars().count() <= 100));
                prop_assert!(s.company.as_ref().is_none_or(|v| v.chars().count() <= 200));
            }
        }
    }
}
