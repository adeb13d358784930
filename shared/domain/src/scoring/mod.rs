//! Lead scoring (docs/domain.md, "Tracking and scoring").
//!
//! - [`ScoringModel`]: the one model, as data: behaviour rules (event type, URL glob, tags →
//!   points, caps), fit rules (lead fields → points), decay half-lives, thresholds, grades,
//!   temperature, the MQL minimum and per-product adjustments. Validated while parsed
//!   ([`EXAMPLE_YAML`] shows every setting).
//! - [`ScoreState`]: what a lead's events earned, kept with the lead. [`ScoreState::apply`]
//!   takes one event; [`ScoreState::snapshot`] gives the exact score at any moment, decayed on
//!   read (no batch job), with grade, temperature, band, product, MQL minimum and an
//!   explanation whose contributions add up to the score.
//!
//! Pure: no I/O, no clock (every moment is a parameter).

mod de;
mod engine;
mod glob;
mod model;
mod points;

#[cfg(test)]
mod tests;

pub use engine::{
    changed, Applied, ApplyStatus, BehaviourEvent, Contribution, ContributionKind, RuleApplied,
    RuleOutcome, ScoreSnapshot, ScoreState, TopEvent, MAX_EVENT_TAGS, MAX_KEPT_EVENTS, MAX_TAGS,
    RETENTION_MS, TOP_EVENTS,
};
pub use glob::{GlobError, UrlGlob};
pub use model::{
    BehaviourRule, Cap, CapPeriod, Decay, EventType, FitMatch, FitRule, Grade, Grades, HalfLife,
    LeadField, ModelError, MqlMinimum, Product, RuleId, ScoreBand, ScoringModel, Temperature,
    TemperatureRules, Thresholds, ThresholdsOverride, MAX_BEHAVIOUR_RULES, MAX_CAP_COUNT,
    MAX_HALF_LIFE_DAYS, MAX_ID_LEN, MAX_TOKEN_LEN, RETENTION_DAYS,
};
pub use points::{Points, PointsError, MAX_POINTS};

use serde::{Deserialize, Serialize};

#[doc = concat!(
    "A complete, valid configuration of the scoring model (the `scoring:` section of \
     `config/leadflow.yaml`); [`ScoringModel::example`] is this model.\n\n```yaml\n",
    include_str!("example.yaml"),
    "```"
)]
pub const EXAMPLE_YAML: &str = include_str!("example.yaml");

/// The document [`EXAMPLE_YAML`] is: a `scoring:` section.
#[derive(Deserialize)]
struct ExampleDoc {
    scoring: ScoringModel,
}

fn parse_example() -> Result<ScoringModel, serde_norway::Error> {
    serde_norway::from_str::<ExampleDoc>(EXAMPLE_YAML).map(|d| d.scoring)
}

/// What fit rules and the MQL minimum look at: the lead's demographic fields
/// (`Lead::fit_profile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl FitProfile {
    /// A field's value, trimmed; `None` when missing or blank.
    pub fn get(&self, field: LeadField) -> Option<&str> {
        let v = match field {
            LeadField::JobTitle => &self.job_title,
            LeadField::CompanySize => &self.company_size,
            LeadField::Industry => &self.industry,
            LeadField::Country => &self.country,
            LeadField::EmailDomain => &self.email_domain,
            LeadField::Company => &self.company,
            LeadField::Source => &self.source,
            LeadField::Postcode => &self.postcode,
            LeadField::Phone => &self.phone,
        };
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
}
