//! The scoring model as configured: data, validated while it is parsed, so that a YAML parser
//! reports the line and column of whatever is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::de::{map_then, num_then, seq_then, str_then};
use super::glob::{lower, UrlGlob};
use super::points::Points;
use super::FitProfile;
use crate::tag::{Tag, TagError};

/// The most behaviour rules one model may have (the score state tracks them in a 64-bit set).
pub const MAX_BEHAVIOUR_RULES: usize = 64;
/// How far back the score state keeps single events (caps, temperature, duplicates); also the
/// longest temperature window.
pub const RETENTION_DAYS: u32 = 90;
/// The longest half-life, in days (100 years: practically no decay).
pub const MAX_HALF_LIFE_DAYS: f64 = 36_500.0;
pub const MAX_CAP_COUNT: u32 = 10_000;
pub const MAX_ID_LEN: usize = 64;
pub const MAX_TOKEN_LEN: usize = 100;

const DAY_MS: f64 = 86_400_000.0;

/// What is wrong with a scoring model. Each message names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("thresholds.engaged must be greater than 0, not {0}")]
    EngagedNotPositive(Points),
    #[error("thresholds.mql ({mql}) must be greater than thresholds.engaged ({engaged})")]
    MqlNotAboveEngaged { engaged: Points, mql: Points },
    #[error("grades.A ({a}) must be greater than grades.B ({b})")]
    GradesOrder { a: Points, b: Points },
    #[error("temperature.warm must be greater than 0, not {0}")]
    WarmNotPositive(Points),
    #[error("temperature.hot ({hot}) must be greater than temperature.warm ({warm})")]
    HotNotAboveWarm { hot: Points, warm: Points },
    #[error("temperature.window_days must be between 1 and {RETENTION_DAYS}, not {0}")]
    WindowDays(u32),
    #[error("a half-life must be greater than 0 and at most {MAX_HALF_LIFE_DAYS} days, not {0}")]
    HalfLife(f64),
    #[error("cap.count must be between 1 and {MAX_CAP_COUNT}, not {0}")]
    CapCount(u32),
    #[error("{0:?} is not a valid id: use 1 to {MAX_ID_LEN} of a-z, 0-9 and -")]
    InvalidId(String),
    #[error(transparent)]
    InvalidTag(#[from] TagError),
    #[error(
        "{0:?} is not a valid event type: use 1 to {MAX_TOKEN_LEN} characters without white space"
    )]
    InvalidEventType(String),
    #[error("{what} must not be empty (leave it out instead)")]
    EmptyList { what: &'static str },
    #[error("{what}: values must not be empty")]
    EmptyValue { what: &'static str },
    #[error("fit rule {rule}: give exactly one of contains_any and in")]
    FitMatcher { rule: String },
    #[error("rule id {0:?} is used more than once (behaviour and fit rules share one set of ids)")]
    DuplicateRuleId(String),
    #[error("product id {0:?} is used more than once")]
    DuplicateProductId(String),
    #[error("at most {MAX_BEHAVIOUR_RULES} behaviour rules, not {0}")]
    TooManyRules(usize),
    #[error("product {product}: points names {rule:?}, which is not a behaviour rule")]
    UnknownRule { product: String, rule: String },
    #[error("product {product}: thresholds.mql ({mql}) must be greater than thresholds.engaged ({engaged}) and engaged greater than 0")]
    ProductThresholds {
        product: String,
        engaged: Points,
        mql: Points,
    },
}

/// The id of a rule or product: 1 to 64 of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RuleId(String);

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_then(d, RuleId::parse)
    }
}

impl RuleId {
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ModelError::InvalidId(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<RuleId> for String {
    fn from(id: RuleId) -> String {
        id.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn token_ok(s: &str) -> bool {
    if s.is_ascii() {
        !s.is_empty() && s.len() <= MAX_TOKEN_LEN && !s.bytes().any(|b| b.is_ascii_whitespace())
    } else {
        s.chars().count() <= MAX_TOKEN_LEN && !s.chars().any(char::is_whitespace)
    }
}

/// An event type as events carry it (`page_view`), matched exactly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EventType(String);

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        str_then(d, EventType::parse)
    }
}

impl EventType {
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        if token_ok(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ModelError::InvalidEventType(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> String {
        t.0
    }
}

/// A half-life in days: greater than 0, at most [`MAX_HALF_LIFE_DAYS`]; fractions allowed.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct HalfLife(f64);

impl<'de> Deserialize<'de> for HalfLife {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        num_then(d, HalfLife::days)
    }
}

impl HalfLife {
    pub fn days(days: f64) -> Result<Self, ModelError> {
        if days.is_finite() && days > 0.0 && days <= MAX_HALF_LIFE_DAYS {
            Ok(Self(days))
        } else {
            Err(ModelError::HalfLife(days))
        }
    }

    pub fn as_days(self) -> f64 {
        self.0
    }

    pub(crate) fn as_ms(self) -> f64 {
        self.0 * DAY_MS
    }

    /// The share of a weight left `elapsed` after it was earned: 2^(−elapsed / half-life).
    /// Nothing grows back: a negative `elapsed` (a clock ahead) counts as none.
    pub fn remaining(self, elapsed: chrono::Duration) -> f64 {
        decay(elapsed.num_milliseconds().max(0), self.as_ms())
    }
}

/// `2^(-dt/hl)`: the one decay of the domain (behaviour points and interests alike).
pub(super) fn decay(dt_ms: i64, hl_ms: f64) -> f64 {
    (-(dt_ms as f64) / hl_ms).exp2()
}

impl From<HalfLife> for f64 {
    fn from(h: HalfLife) -> f64 {
        h.0
    }
}

/// A field of the lead that fit rules and the MQL minimum look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadField {
    JobTitle,
    CompanySize,
    Industry,
    Country,
    EmailDomain,
    Company,
    Source,
    Postcode,
    Phone,
}

/// The rating of a lead by fit (ABC analysis): A is best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Grade {
    A,
    B,
    C,
}

impl Grade {
    fn rank(self) -> u8 {
        match self {
            Grade::A => 3,
            Grade::B => 2,
            Grade::C => 1,
        }
    }
}

impl Ord for Grade {
    /// A > B > C.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Grade {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// How recently the lead earned points, told honestly to whoever works it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temperature {
    Cold,
    Warm,
    Hot,
}

/// Where the score stands against the thresholds: Low < Engaged < Mql.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreBand {
    Low,
    Engaged,
    Mql,
}

/// Score thresholds (behaviour + fit): `mql > engaged > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    pub engaged: Points,
    pub mql: Points,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsDef {
    engaged: Points,
    mql: Points,
}

impl Thresholds {
    pub fn new(engaged: Points, mql: Points) -> Result<Self, ModelError> {
        if !engaged.is_positive() {
            return Err(ModelError::EngagedNotPositive(engaged));
        }
        if mql <= engaged {
            return Err(ModelError::MqlNotAboveEngaged { engaged, mql });
        }
        Ok(Self { engaged, mql })
    }

    /// The band a score falls in.
    pub fn band(&self, score: Points) -> ScoreBand {
        if score >= self.mql {
            ScoreBand::Mql
        } else if score >= self.engaged {
            ScoreBand::Engaged
        } else {
            ScoreBand::Low
        }
    }
}

impl<'de> Deserialize<'de> for Thresholds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_then(d, |d: ThresholdsDef| Thresholds::new(d.engaged, d.mql))
    }
}

/// The demographic minimum of an MQL (besides the score): at least one of the fields is
/// non-empty, and the grade is at least `min_grade`. Default: no minimum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqlMinimum {
    /// Empty: no field required.
    #[serde(default)]
    pub requires_any_of: Vec<LeadField>,
    #[serde(default = "grade_c")]
    pub min_grade: Grade,
}

fn grade_c() -> Grade {
    Grade::C
}

impl Default for MqlMinimum {
    fn default() -> Self {
        Self {
            requires_any_of: Vec::new(),
            min_grade: Grade::C,
        }
    }
}

impl MqlMinimum {
    pub fn is_met(&self, fit: &FitProfile, grade: Grade) -> bool {
        grade >= self.min_grade
            && (self.requires_any_of.is_empty()
                || self.requires_any_of.iter().any(|f| fit.get(*f).is_some()))
    }
}

/// Fit score needed for grade A and B (else C): `A > B`. Default A: 40, B: 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Grades {
    #[serde(rename = "A")]
    pub a: Points,
    #[serde(rename = "B")]
    pub b: Points,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GradesDef {
    #[serde(rename = "A")]
    a: Points,
    #[serde(rename = "B")]
    b: Points,
}

impl<'de> Deserialize<'de> for Grades {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_then(d, |def: GradesDef| Grades::try_from(def))
    }
}

impl TryFrom<GradesDef> for Grades {
    type Error = ModelError;
    fn try_from(d: GradesDef) -> Result<Self, ModelError> {
        if d.a <= d.b {
            return Err(ModelError::GradesOrder { a: d.a, b: d.b });
        }
        Ok(Self { a: d.a, b: d.b })
    }
}

impl Default for Grades {
    fn default() -> Self {
        Self {
            a: Points::from_cents(4000),
            b: Points::from_cents(2000),
        }
    }
}

impl Grades {
    pub fn grade(&self, fit: Points) -> Grade {
        if fit >= self.a {
            Grade::A
        } else if fit >= self.b {
            Grade::B
        } else {
            Grade::C
        }
    }
}

/// Temperature: the positive behavioural points (undecayed) earned in the `window_days` before
/// the moment asked about; `>= hot` is Hot, `>= warm` Warm, else Cold. Default 7 days, 30, 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TemperatureRules {
    pub window_days: u32,
    pub hot: Points,
    pub warm: Points,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemperatureDef {
    #[serde(default = "seven")]
    window_days: u32,
    hot: Points,
    warm: Points,
}

fn seven() -> u32 {
    7
}

impl<'de> Deserialize<'de> for TemperatureRules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_then(d, |def: TemperatureDef| TemperatureRules::try_from(def))
    }
}

impl TryFrom<TemperatureDef> for TemperatureRules {
    type Error = ModelError;
    fn try_from(d: TemperatureDef) -> Result<Self, ModelError> {
        if d.window_days == 0 || d.window_days > RETENTION_DAYS {
            return Err(ModelError::WindowDays(d.window_days));
        }
        if !d.warm.is_positive() {
            return Err(ModelError::WarmNotPositive(d.warm));
        }
        if d.hot <= d.warm {
            return Err(ModelError::HotNotAboveWarm {
                hot: d.hot,
                warm: d.warm,
            });
        }
        Ok(Self {
            window_days: d.window_days,
            hot: d.hot,
            warm: d.warm,
        })
    }
}

impl Default for TemperatureRules {
    fn default() -> Self {
        Self {
            window_days: 7,
            hot: Points::from_cents(3000),
            warm: Points::from_cents(1000),
        }
    }
}

impl TemperatureRules {
    pub fn temperature(&self, recent_points: Points) -> Temperature {
        if recent_points >= self.hot {
            Temperature::Hot
        } else if recent_points >= self.warm {
            Temperature::Warm
        } else {
            Temperature::Cold
        }
    }

    pub(crate) fn window_ms(&self) -> i64 {
        i64::from(self.window_days) * 86_400_000
    }
}

/// Half-lives of behavioural points: per event type, else the default (30 days by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decay {
    #[serde(default = "thirty_days")]
    pub default_half_life_days: HalfLife,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_event_type: BTreeMap<EventType, HalfLife>,
}

fn thirty_days() -> HalfLife {
    HalfLife(30.0)
}

impl Default for Decay {
    fn default() -> Self {
        Self {
            default_half_life_days: thirty_days(),
            by_event_type: BTreeMap::new(),
        }
    }
}

impl Decay {
    pub fn half_life(&self, event_type: &EventType) -> HalfLife {
        self.by_event_type
            .get(event_type)
            .copied()
            .unwrap_or(self.default_half_life_days)
    }
}

/// The calendar bucket of a cap, in UTC: a day, an ISO week (Monday to Sunday), a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    Day,
    Week,
    Month,
}

/// At most `count` events of a rule count in each `per` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cap {
    pub count: u32,
    pub per: CapPeriod,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapDef {
    count: u32,
    per: CapPeriod,
}

impl<'de> Deserialize<'de> for Cap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_then(d, |def: CapDef| Cap::try_from(def))
    }
}

impl TryFrom<CapDef> for Cap {
    type Error = ModelError;
    fn try_from(d: CapDef) -> Result<Self, ModelError> {
        if d.count == 0 || d.count > MAX_CAP_COUNT {
            return Err(ModelError::CapCount(d.count));
        }
        Ok(Self {
            count: d.count,
            per: d.per,
        })
    }
}

/// A behaviour rule: events of `event_type` (and, where given, with a URL matching `url` and at
/// least one of `tags_any`) earn `points` (negative: lose), at most `cap.count` per bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourRule {
    pub id: RuleId,
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<UrlGlob>,
    /// Empty: no tag condition.
    #[serde(
        default,
        deserialize_with = "tags_any",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags_any: Vec<Tag>,
    pub points: Points,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
}

fn tags_any<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Tag>, D::Error> {
    seq_then(d, |tags: &[Tag]| {
        if tags.is_empty() {
            Err(ModelError::EmptyList { what: "tags_any" })
        } else {
            Ok(())
        }
    })
}

impl BehaviourRule {
    /// Whether the rule matches an event, given its URL in lower case and its normalised tags.
    pub(crate) fn matches<T: AsRef<str>>(
        &self,
        event_type: &str,
        url_lower: Option<&str>,
        tags: &[T],
    ) -> bool {
        if self.event_type.as_str() != event_type {
            return false;
        }
        if let Some(glob) = &self.url {
            match url_lower {
                Some(u) if glob.matches_lower(u) => {}
                _ => return false,
            }
        }
        self.tags_any.is_empty()
            || self
                .tags_any
                .iter()
                .any(|t| tags.iter().any(|e| e.as_ref() == t.as_str()))
    }
}

/// How a fit rule compares a lead field (both ignore case and surrounding space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitMatch {
    /// The field contains one of these (substring).
    ContainsAny(Vec<String>),
    /// The field is one of these.
    In(Vec<String>),
}

/// A demographic rule: a lead whose `field` matches earns `points` (may be negative). Fit does
/// not decay.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "FitRuleDef")]
pub struct FitRule {
    pub id: RuleId,
    pub field: LeadField,
    pub matcher: FitMatch,
    pub points: Points,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FitRuleDef {
    id: RuleId,
    field: LeadField,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains_any: Option<Vec<String>>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    in_: Option<Vec<String>>,
    points: Points,
}

fn normalised_values(values: Vec<String>, what: &'static str) -> Result<Vec<String>, ModelError> {
    if values.is_empty() {
        return Err(ModelError::EmptyList { what });
    }
    values
        .into_iter()
        .map(|v| {
            let v = v.trim();
            if v.is_empty() {
                Err(ModelError::EmptyValue { what })
            } else {
                Ok(v.to_lowercase())
            }
        })
        .collect()
}

impl<'de> Deserialize<'de> for FitRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_then(d, |def: FitRuleDef| FitRule::try_from(def))
    }
}

impl TryFrom<FitRuleDef> for FitRule {
    type Error = ModelError;
    fn try_from(d: FitRuleDef) -> Result<Self, ModelError> {
        let matcher = match (d.contains_any, d.in_) {
            (Some(v), None) => FitMatch::ContainsAny(normalised_values(v, "contains_any")?),
            (None, Some(v)) => FitMatch::In(normalised_values(v, "in")?),
            _ => {
                return Err(ModelError::FitMatcher {
                    rule: d.id.to_string(),
                })
            }
        };
        Ok(Self {
            id: d.id,
            field: d.field,
            matcher,
            points: d.points,
        })
    }
}

impl From<FitRule> for FitRuleDef {
    fn from(r: FitRule) -> Self {
        let (contains_any, in_) = match r.matcher {
            FitMatch::ContainsAny(v) => (Some(v), None),
            FitMatch::In(v) => (None, Some(v)),
        };
        Self {
            id: r.id,
            field: r.field,
            contains_any,
            in_,
            points: r.points,
        }
    }
}

impl FitRule {
    pub fn matches(&self, fit: &FitProfile) -> bool {
        let Some(value) = fit.get(self.field) else {
            return false;
        };
        let value = lower(value.trim());
        match &self.matcher {
            FitMatch::ContainsAny(needles) => needles.iter().any(|n| value.contains(n.as_str())),
            FitMatch::In(options) => options.iter().any(|o| *o == value),
        }
    }
}

/// Engaged and/or MQL threshold of a product, replacing the model's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engaged: Option<Points>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mql: Option<Points>,
}

/// An adjustment of the one model for a product or business unit. A lead belongs to the product
/// whose `tags_any` carry the highest interest weight (ties: the first listed; no weight: none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: RuleId,
    #[serde(deserialize_with = "tags_any")]
    pub tags_any: Vec<Tag>,
    /// Behaviour rule id → points replacing the rule's points for leads of this product.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub points: BTreeMap<RuleId, Points>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ThresholdsOverride>,
}

/// The one scoring model of the organisation (docs/domain.md, "Tracking and scoring"), as
/// configured in the `scoring:` section; see [`super::EXAMPLE_YAML`].
///
/// It is valid by construction: it can only be made by deserialising (which validates every
/// setting and reports the first problem with its location) or by [`ScoringModel::example`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "ModelDef")]
pub struct ScoringModel {
    def: ModelDef,
    /// Per behaviour rule: its half-life in milliseconds.
    half_life_ms: Vec<f64>,
    /// Per product: per behaviour rule, its points.
    product_points: Vec<Vec<Points>>,
    /// Per product: its thresholds.
    product_thresholds: Vec<Thresholds>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelDef {
    thresholds: Thresholds,
    #[serde(default)]
    mql_minimum: MqlMinimum,
    #[serde(default)]
    grades: Grades,
    #[serde(default)]
    temperature: TemperatureRules,
    #[serde(default)]
    decay: Decay,
    #[serde(default, deserialize_with = "behaviour_rules")]
    behaviour: Vec<BehaviourRule>,
    #[serde(default, deserialize_with = "fit_rules")]
    fit: Vec<FitRule>,
    #[serde(default, deserialize_with = "products")]
    products: Vec<Product>,
    #[serde(default = "thirty_days")]
    interest_half_life_days: HalfLife,
}

fn unique<'a>(
    ids: impl Iterator<Item = &'a RuleId>,
    err: fn(String) -> ModelError,
) -> Result<(), ModelError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(err(id.to_string()));
        }
    }
    Ok(())
}

fn behaviour_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BehaviourRule>, D::Error> {
    seq_then(d, |rules: &[BehaviourRule]| {
        if rules.len() > MAX_BEHAVIOUR_RULES {
            return Err(ModelError::TooManyRules(rules.len()));
        }
        unique(rules.iter().map(|r| &r.id), ModelError::DuplicateRuleId)
    })
}

fn fit_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FitRule>, D::Error> {
    seq_then(d, |rules: &[FitRule]| {
        unique(rules.iter().map(|r| &r.id), ModelError::DuplicateRuleId)
    })
}

fn products<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Product>, D::Error> {
    seq_then(d, |products: &[Product]| {
        unique(
            products.iter().map(|p| &p.id),
            ModelError::DuplicateProductId,
        )
    })
}

impl<'de> Deserialize<'de> for ScoringModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_then(d, |def: ModelDef| ScoringModel::try_from(def))
    }
}

impl TryFrom<ModelDef> for ScoringModel {
    type Error = ModelError;
    fn try_from(def: ModelDef) -> Result<Self, ModelError> {
        unique(
            def.behaviour
                .iter()
                .map(|r| &r.id)
                .chain(def.fit.iter().map(|r| &r.id)),
            ModelError::DuplicateRuleId,
        )?;
        let half_life_ms = def
            .behaviour
            .iter()
            .map(|r| def.decay.half_life(&r.event_type).as_ms())
            .collect();
        let mut product_points = Vec::with_capacity(def.products.len());
        let mut product_thresholds = Vec::with_capacity(def.products.len());
        for p in &def.products {
            if let Some(rule) = p
                .points
                .keys()
                .find(|id| !def.behaviour.iter().any(|r| r.id == **id))
            {
                return Err(ModelError::UnknownRule {
                    product: p.id.to_string(),
                    rule: rule.to_string(),
                });
            }
            product_points.push(
                def.behaviour
                    .iter()
                    .map(|r| p.points.get(&r.id).copied().unwrap_or(r.points))
                    .collect(),
            );
            let o = p.thresholds.unwrap_or_default();
            let engaged = o.engaged.unwrap_or(def.thresholds.engaged);
            let mql = o.mql.unwrap_or(def.thresholds.mql);
            let t = Thresholds::new(engaged, mql).map_err(|_| ModelError::ProductThresholds {
                product: p.id.to_string(),
                engaged,
                mql,
            })?;
            product_thresholds.push(t);
        }
        Ok(Self {
            def,
            half_life_ms,
            product_points,
            product_thresholds,
        })
    }
}

impl From<ScoringModel> for ModelDef {
    fn from(m: ScoringModel) -> Self {
        m.def
    }
}

impl ScoringModel {
    /// The model of [`super::EXAMPLE_YAML`]: a realistic starting point, and what tests and
    /// benchmarks use.
    pub fn example() -> Self {
        super::parse_example().expect("the example scoring model is valid")
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.def.thresholds
    }

    pub fn mql_minimum(&self) -> &MqlMinimum {
        &self.def.mql_minimum
    }

    pub fn grades(&self) -> &Grades {
        &self.def.grades
    }

    pub fn temperature(&self) -> &TemperatureRules {
        &self.def.temperature
    }

    pub fn decay(&self) -> &Decay {
        &self.def.decay
    }

    pub fn behaviour(&self) -> &[BehaviourRule] {
        &self.def.behaviour
    }

    pub fn fit(&self) -> &[FitRule] {
        &self.def.fit
    }

    pub fn products(&self) -> &[Product] {
        &self.def.products
    }

    pub fn interest_half_life(&self) -> HalfLife {
        self.def.interest_half_life_days
    }

    /// The index of a behaviour rule by id.
    pub fn behaviour_index(&self, id: &str) -> Option<usize> {
        self.def.behaviour.iter().position(|r| r.id.as_str() == id)
    }

    /// The half-life of behaviour rule `i` (by its event type), in milliseconds.
    pub(crate) fn half_life_ms(&self, i: usize) -> f64 {
        self.half_life_ms[i]
    }

    /// The points of behaviour rule `i` for a lead of `product` (an index into
    /// [`Self::products`]), or of the base model.
    pub fn points(&self, i: usize, product: Option<usize>) -> Points {
        match product {
            Some(p) => self.product_points[p][i],
            None => self.def.behaviour[i].points,
        }
    }

    /// The thresholds for a lead of `product`, or of the base model.
    pub fn thresholds_for(&self, product: Option<usize>) -> &Thresholds {
        match product {
            Some(p) => &self.product_thresholds[p],
            None => &self.def.thresholds,
        }
    }

    /// The product of a lead with these interest weights (by tag): the one whose tags weigh
    /// most, the first listed on a tie, none when no product tag has any weight.
    pub fn product_for(&self, weight: impl Fn(&Tag) -> f64) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, p) in self.def.products.iter().enumerate() {
            let w: f64 = p.tags_any.iter().map(&weight).sum();
            if w > 0.0 && best.is_none_or(|(_, b)| w > b) {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| i)
    }
}
