//! The lead (docs/domain.md, "Glossary"): a person who showed interest, with everything known
//! about them. The decisions that change a lead live with their step: [`crate::capture`],
//! [`crate::qualification`], [`crate::routing`], [`crate::crm`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::assignment::Assignment;
use crate::bant::Bant;
use crate::crm_record::CrmRecord;
use crate::email::Email;
use crate::provenance::Provenance;
use crate::scoring::{FitProfile, Grade, Points, ScoreBand, Temperature};
use crate::stage::Stage;

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
    /// Who set which field, where it was someone above a plain form (see
    /// [`crate::provenance`]); absent in leads stored before, which read as all-form.
    #[serde(default, skip_serializing_if = "Provenance::is_empty")]
    pub provenance: Provenance,
    /// How many form submissions the timeline holds for this lead (capped; see
    /// `capture::MAX_FORM_ENTRIES`).
    #[serde(default, skip_serializing_if = "FormLog::is_empty")]
    pub form_log: FormLog,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    /// What qualification last decided: score, grade, temperature, by which config version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification: Option<Qualification>,
    /// Budget, Authority, Need, Time, as inside sales found them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bant: Option<Bant>,
    /// Who works the lead, and why (routing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// Earlier assignments with how each ended (reassigned, offer expired, handed back ...):
    /// the SLA facts of reporting, and whom the lead must not go to again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignment_history: Vec<Assignment>,
    /// The lead's record in the CRM (external id, last status), from the CRM's callbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<CrmRecord>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version: 1 at capture, +1 on every stored change.
    pub version: u64,
}

/// The count of a lead's form submissions, kept with the lead so that capture can cap what
/// public requests add to the timeline without reading it (docs/data-model.md, "Caps per lead").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormLog {
    /// Resubmissions recorded on the timeline, each with its own entry.
    #[serde(default)]
    pub recorded: u32,
    /// Resubmissions after the cap: counted here instead of getting an entry each.
    #[serde(default)]
    pub folded: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_folded_at: Option<DateTime<Utc>>,
}

impl FormLog {
    pub fn is_empty(&self) -> bool {
        self == &FormLog::default()
    }
}

/// The lead's standing as qualification last saw it: told honestly to whoever works the lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qualification {
    pub score: Points,
    pub band: ScoreBand,
    pub grade: Grade,
    pub temperature: Temperature,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    pub config_version: u64,
    pub at: DateTime<Utc>,
}

impl Lead {
    /// What fit rules and the MQL minimum look at; `email_domain` is the domain of the e-mail.
    pub fn fit_profile(&self) -> FitProfile {
        FitProfile {
            job_title: self.job_title.clone(),
            company_size: self.company_size.clone(),
            industry: self.industry.clone(),
            country: self.country.clone(),
            email_domain: Some(self.email.domain().to_owned()),
            company: self.company.clone(),
            source: self.source.clone(),
            postcode: self.postcode.clone(),
            phone: self.phone.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn lead_ids_sort_by_time() {
        let a = LeadId::new_at(at("2026-01-01T00:00:00Z"));
        let b = LeadId::new_at(at("2026-01-01T00:00:01Z"));
        assert!(a < b);
        assert_eq!(a.to_string().parse::<LeadId>().unwrap(), a);
    }
}
