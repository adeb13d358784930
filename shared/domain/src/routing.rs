//! Routing (docs/domain.md, "Routing"): which pool a sales-ready lead goes to, and inside a
//! pool, whose turn it is. Configuration as data (the `routing:` section of
//! config/leadflow.yaml), validated on parse. The decisions are pure: [`RoutingConfig::plan`]
//! picks the pool and what kind of target it has, [`RoutingPlan::candidate`] says whether the
//! owner of a round-robin turn may take the lead, and [`assign`] makes the [`Assignment`]. The
//! shared state (the pool's turn counter, daily caps) lives in the store.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::assignment::{AssignedTo, Assignment, AssignmentEnd, Id};
use crate::change::Change;
use crate::events::LeadEvent;
use crate::lead::{Lead, LeadId};
use crate::scoring::{Grade, Temperature};
use crate::sla::{SlaConfig, SlaPolicy};
use crate::stage::Stage;
use crate::tag::Tag;
use crate::timeline::{TimelineAction, TimelineEntry};
pub use crate::webhook::CrmTarget;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Days an owner is away (both ends included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Absence {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub id: Id,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Id>,
    /// Share of the round-robin: an owner of weight 2 gets twice the leads of weight 1.
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_cap: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absences: Vec<Absence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<CrmTarget>,
    /// Where the owner sells: country codes (`DE`) or a country with a postcode prefix
    /// (`DE-8` for postcodes 8...). Empty: everywhere. The round-robin passes over an owner
    /// whose territory does not hold the lead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub territories: Vec<String>,
    /// The products (business units) or interest tags the owner sells. Empty: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
}

fn one() -> u32 {
    1
}

impl Owner {
    pub fn is_absent(&self, day: NaiveDate) -> bool {
        self.absences.iter().any(|a| a.from <= day && day <= a.to)
    }

    /// Whether the lead is in the owner's territory and about a product the owner sells.
    pub fn covers(&self, f: &RoutingFacts<'_>) -> bool {
        let in_territory = self.territories.is_empty()
            || f.lead.country.as_ref().is_some_and(|country| {
                self.territories.iter().any(|t| match t.split_once('-') {
                    Some((c, prefix)) => {
                        c.eq_ignore_ascii_case(country)
                            && f.lead
                                .postcode
                                .as_ref()
                                .is_some_and(|p| p.starts_with(prefix))
                    }
                    None => t.eq_ignore_ascii_case(country),
                })
            });
        let sells = self.products.is_empty()
            || self.products.iter().any(|p| {
                f.product.is_some_and(|lp| lp.eq_ignore_ascii_case(p))
                    || f.interested_in(&p.to_lowercase())
            });
        in_territory && sells
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    pub id: Id,
    pub name: String,
    pub crm: CrmTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub id: Id,
    /// Owners taking turns (round-robin by weight).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Id>,
    /// Leads wait in this manager's queue instead of going to a member (hot leads skip it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_manager: Option<Id>,
    /// The pool is a distribution partner / reseller: the lead is offered to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<Id>,
    /// Partners in turn: the lead is offered to the first; an offer declined or not accepted
    /// in time goes to the next (`partner` is a list of one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<Id>,
    /// How fast the pool's owners must accept a lead.
    #[serde(default)]
    pub sla: SlaPolicy,
}

/// Conditions are ANDed; an empty list matches anything. The first rule that matches picks
/// the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub id: Id,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postcode_prefixes: Vec<String>,
    /// The lead is interested in one of these tags (interest weight at least 0.5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags_any: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grades: Vec<Grade>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub temperatures: Vec<Temperature>,
    pub pool: Id,
}

/// The weight at which a tag counts as an interest for routing.
pub const INTEREST_THRESHOLD: f64 = 0.5;

/// The largest round-robin weight of an owner: shares such as 1:2:1 need no more, and a
/// pool's turn order has one entry per unit of weight.
pub const MAX_WEIGHT: u32 = 100;
/// The largest daily cap: a cap above it is no cap.
pub const MAX_DAILY_CAP: u32 = 10_000;

/// What a routing decision looks at besides the lead's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingFacts<'a> {
    pub lead: &'a Lead,
    pub grade: Grade,
    pub temperature: Temperature,
    pub interests: &'a BTreeMap<String, f64>,
    /// The product (business unit) scoring assigned the lead to, if any.
    pub product: Option<&'a str>,
    /// Owners and partners who may not get the lead: away, or they let it expire or
    /// declined it before ([`Lead::passed_over`]).
    pub excluded: &'a BTreeSet<Id>,
}

impl<'a> RoutingFacts<'a> {
    /// The facts of a lead as qualification left it (a lead never qualified counts as grade
    /// C, cold), with its `interests` now and whom it may not go to.
    pub fn of(
        lead: &'a Lead,
        interests: &'a BTreeMap<String, f64>,
        excluded: &'a BTreeSet<Id>,
    ) -> Self {
        let q = lead.qualification.as_ref();
        Self {
            lead,
            grade: q.map_or(Grade::C, |q| q.grade),
            temperature: q.map_or(Temperature::Cold, |q| q.temperature),
            interests,
            product: q.and_then(|q| q.product.as_deref()),
            excluded,
        }
    }

    /// Whether the lead's interest in `tag` is strong enough to route on.
    fn interested_in(&self, tag: &str) -> bool {
        self.interests
            .get(tag)
            .is_some_and(|w| *w >= INTEREST_THRESHOLD)
    }
}

impl Pool {
    /// The partners the pool offers leads to, in order.
    pub fn partner_ids(&self) -> impl Iterator<Item = &Id> {
        self.partner.iter().chain(&self.partners)
    }
}

impl RoutingRule {
    pub fn matches(&self, f: &RoutingFacts<'_>) -> bool {
        let eq = |list: &[String], v: Option<&String>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
        };
        eq(&self.countries, f.lead.country.as_ref())
            && (self.postcode_prefixes.is_empty()
                || f.lead.postcode.as_ref().is_some_and(|p| {
                    self.postcode_prefixes
                        .iter()
                        .any(|x| p.starts_with(x.as_str()))
                }))
            && (self.tags_any.is_empty()
                || self.tags_any.iter().any(|t| f.interested_in(t.as_str())))
            && eq(
                &self.campaigns,
                f.lead.campaign.as_ref().or(f.lead.utm.campaign.as_ref()),
            )
            && eq(
                &self.sources,
                f.lead.source.as_ref().or(f.lead.utm.source.as_ref()),
            )
            && (self.grades.is_empty() || self.grades.contains(&f.grade))
            && (self.temperatures.is_empty() || self.temperatures.contains(&f.temperature))
    }
}

/// The `routing:` section: owners, pools, partners, ordered rules, and the default pool that
/// takes every lead no rule matches (never a dropped lead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutingConfig {
    pub default_pool: Id,
    /// The CRM of owners who name none of their own.
    pub crm: Option<CrmTarget>,
    pub owners: Vec<Owner>,
    pub pools: Vec<Pool>,
    pub partners: Vec<Partner>,
    pub rules: Vec<RoutingRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    default_pool: Id,
    #[serde(default)]
    crm: Option<CrmTarget>,
    owners: Vec<Owner>,
    pools: Vec<Pool>,
    #[serde(default)]
    partners: Vec<Partner>,
    #[serde(default)]
    rules: Vec<RoutingRule>,
}

impl<'de> Deserialize<'de> for RoutingConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRouting::deserialize(d)?;
        RoutingConfig::validate(raw).map_err(serde::de::Error::custom)
    }
}

impl RoutingConfig {
    fn validate(raw: RawRouting) -> Result<Self, String> {
        let mut ids = BTreeSet::new();
        for id in raw
            .owners
            .iter()
            .map(|o| &o.id)
            .chain(raw.partners.iter().map(|p| &p.id))
        {
            if !valid_id(id) {
                return Err(format!(
                    "id {id:?} must be 1 to 64 characters of a-z, 0-9 and -"
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(format!("owner/partner id {id:?} is used twice"));
            }
        }
        let owner = |id: &str| raw.owners.iter().any(|o| o.id == id);
        for o in &raw.owners {
            // A pool's turn order is one entry per unit of weight: the bound keeps it small.
            if !(1..=MAX_WEIGHT).contains(&o.weight) {
                return Err(format!(
                    "owners.{}.weight must be 1 to {MAX_WEIGHT} (it is a share, not a count)",
                    o.id
                ));
            }
            if o.daily_cap
                .is_some_and(|c| !(1..=MAX_DAILY_CAP).contains(&c))
            {
                return Err(format!(
                    "owners.{}.daily_cap must be 1 to {MAX_DAILY_CAP} (leave it out for no cap)",
                    o.id
                ));
            }
            if let Some(m) = o.manager.as_ref().filter(|m| !owner(m)) {
                return Err(format!("owners.{}.manager {m:?} is not an owner", o.id));
            }
            if o.absences.iter().any(|a| a.to < a.from) {
                return Err(format!(
                    "owners.{}.absences: an absence ends before it starts",
                    o.id
                ));
            }
            if let Some(crm) = &o.crm {
                crm.check()
                    .map_err(|e| format!("owners.{}.crm: {e}", o.id))?;
            }
            if let Some(t) = o.territories.iter().find(|t| {
                let country = t.split('-').next().unwrap_or_default();
                country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic())
            }) {
                return Err(format!(
                    "owners.{}.territories: {t:?} is not a country code (DE) or a country with a postcode prefix (DE-8)",
                    o.id
                ));
            }
        }
        for p in &raw.partners {
            p.crm
                .check()
                .map_err(|e| format!("partners.{}.crm: {e}", p.id))?;
        }
        let mut pool_ids = BTreeSet::new();
        for p in &raw.pools {
            if !valid_id(&p.id) || !pool_ids.insert(p.id.clone()) {
                return Err(format!("pool id {:?} is invalid or used twice", p.id));
            }
            let partners = p.partner_ids().count();
            let targets = usize::from(!p.members.is_empty()) + usize::from(partners > 0);
            if targets != 1 {
                return Err(format!(
                    "pools.{}: give either members or a partner (or partners)",
                    p.id
                ));
            }
            if p.partner.is_some() && !p.partners.is_empty() {
                return Err(format!(
                    "pools.{}: give partner or partners, not both",
                    p.id
                ));
            }
            if let Some(m) = p.members.iter().find(|m| !owner(m)) {
                return Err(format!("pools.{}.members: {m:?} is not an owner", p.id));
            }
            if let Some(m) = p.staging_manager.as_ref().filter(|m| !owner(m)) {
                return Err(format!(
                    "pools.{}.staging_manager {m:?} is not an owner",
                    p.id
                ));
            }
            if let Some(partner) = p
                .partner_ids()
                .find(|x| !raw.partners.iter().any(|p| &p.id == *x))
            {
                return Err(format!(
                    "pools.{}.partner {partner:?} is not a partner",
                    p.id
                ));
            }
            if let Some(problem) = p.sla.problem() {
                return Err(format!("pools.{}.sla.{problem}", p.id));
            }
        }
        if !pool_ids.contains(&raw.default_pool) {
            return Err(format!("default_pool {:?} is not a pool", raw.default_pool));
        }
        let mut rule_ids = BTreeSet::new();
        for r in &raw.rules {
            if !valid_id(&r.id) || !rule_ids.insert(r.id.clone()) {
                return Err(format!("rule id {:?} is invalid or used twice", r.id));
            }
            if !pool_ids.contains(&r.pool) {
                return Err(format!("rules.{}.pool {:?} is not a pool", r.id, r.pool));
            }
        }
        if let Some(crm) = &raw.crm {
            crm.check().map_err(|e| format!("crm: {e}"))?;
        }
        Ok(Self {
            default_pool: raw.default_pool,
            crm: raw.crm,
            owners: raw.owners,
            pools: raw.pools,
            partners: raw.partners,
            rules: raw.rules,
        })
    }

    pub fn owner(&self, id: &str) -> Option<&Owner> {
        self.owners.iter().find(|o| o.id == id)
    }

    pub fn pool(&self, id: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.id == id)
    }

    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.id == id)
    }

    /// Where the lead goes in the CRM: the owner's (or queue manager's) CRM, else the
    /// routing-wide one; a partner's own. `None`: nobody to deliver to.
    pub fn crm_for(&self, to: &AssignedTo) -> Option<&CrmTarget> {
        match to {
            AssignedTo::Owner { id, .. } | AssignedTo::ManagerQueue { id, .. } => self
                .owner(id)
                .and_then(|o| o.crm.as_ref())
                .or(self.crm.as_ref()),
            AssignedTo::Partner { id, .. } => self.partner(id).map(|p| &p.crm),
        }
    }

    /// Every CRM that may call back (its secret reference is its identity), once each.
    pub fn crm_targets(&self) -> Vec<&CrmTarget> {
        let mut seen = BTreeSet::new();
        self.crm
            .iter()
            .chain(self.owners.iter().filter_map(|o| o.crm.as_ref()))
            .chain(self.partners.iter().map(|p| &p.crm))
            .filter(|t| seen.insert(t.secret.as_str()))
            .collect()
    }

    /// The CRM secrets (Secrets Manager ARNs) whose names lie outside `prefix`, where they are
    /// configured: the deployment lets the CRM functions read only the secrets under its
    /// `CrmSecretPrefix`, so these would fail with AccessDenied. `env:` references are the
    /// functions' own and always readable.
    pub fn secrets_outside(&self, prefix: &str) -> Vec<(String, &str)> {
        let targets = self
            .crm
            .iter()
            .map(|t| ("routing.crm".to_owned(), t))
            .chain(self.owners.iter().filter_map(|o| {
                o.crm
                    .as_ref()
                    .map(|t| (format!("routing.owners.{}.crm", o.id), t))
            }))
            .chain(
                self.partners
                    .iter()
                    .map(|p| (format!("routing.partners.{}.crm", p.id), &p.crm)),
            );
        targets
            .filter(|(_, t)| {
                t.secret_name()
                    .is_some_and(|name| !name.starts_with(prefix))
            })
            .map(|(at, t)| (format!("{at}.secret"), t.secret.as_str()))
            .collect()
    }

    /// The manager's queue a lead taken from `owner` of `pool` goes to: the pool's staging
    /// manager, else the owner's manager. `None` when neither is configured.
    pub fn queue_assignment(
        &self,
        pool: &str,
        owner: &str,
        sla: &SlaConfig,
        config_version: u64,
        now: DateTime<Utc>,
    ) -> Option<Assignment> {
        let p = self.pool(pool)?;
        let manager = p
            .staging_manager
            .as_deref()
            .or_else(|| self.owner(owner).and_then(|o| o.manager.as_deref()))
            .and_then(|m| self.owner(m))?;
        let (sla_deadline, _) = sla.start(pool, &p.sla, false, false, now);
        Some(Assignment {
            assigned_to: owner_as(manager, |id, name, email| AssignedTo::ManagerQueue {
                id,
                name,
                email,
            }),
            pool: p.id.clone(),
            rule: None,
            fast_track: false,
            config_version,
            at: now,
            sla_deadline,
            accepted_at: None,
            sla: None,
            delivered_at: None,
            outcome: None,
        })
    }

    /// The first matching rule and its pool, else the default pool (no rule).
    pub fn pool_for(&self, facts: &RoutingFacts<'_>) -> (Option<&RoutingRule>, &Pool) {
        let rule = self.rules.iter().find(|r| r.matches(facts));
        let pool_id = rule.map_or(self.default_pool.as_str(), |r| r.pool.as_str());
        // Validation guarantees every referenced pool exists.
        let pool = self
            .pool(pool_id)
            .or_else(|| self.pools.first())
            .expect("a validated routing config has pools");
        (rule, pool)
    }

    /// Where the lead goes: the pool of the first matching rule (else the default pool), and
    /// within it the first partner not passed over, the staging manager's queue, or the
    /// members' turns. A hot lead skips the manager's queue (the fast track). When every
    /// partner of a partner pool was passed over, the pool's manager queues the lead, and
    /// without one the default pool takes it.
    pub fn plan(&self, facts: &RoutingFacts<'_>) -> RoutingPlan<'_> {
        let (rule, pool) = self.pool_for(facts);
        self.plan_in(rule, pool, facts)
    }

    fn plan_in<'c>(
        &'c self,
        rule: Option<&'c RoutingRule>,
        pool: &'c Pool,
        facts: &RoutingFacts<'_>,
    ) -> RoutingPlan<'c> {
        let hot = facts.temperature == Temperature::Hot;
        let staging = pool.staging_manager.as_ref().and_then(|m| self.owner(m));
        let partner_pool = pool.partner_ids().next().is_some();
        let partner = pool
            .partner_ids()
            .filter(|p| !facts.excluded.contains(*p))
            .find_map(|p| self.partner(p));
        let target = match (partner, staging) {
            (Some(partner), _) => Target::Partner(partner),
            (None, Some(manager)) if partner_pool || !hot => Target::ManagerQueue(manager),
            (None, None) if partner_pool => match self.pool(&self.default_pool) {
                Some(default)
                    if default.id != pool.id && default.partner_ids().next().is_none() =>
                {
                    return self.plan_in(None, default, facts);
                }
                _ => Target::Members {
                    order: Vec::new(),
                    fallback: None,
                },
            },
            _ => Target::Members {
                order: self.sequence(pool),
                // Everyone away or full: the pool's manager (or the first member's) decides.
                fallback: staging.or_else(|| {
                    pool.members
                        .first()
                        .and_then(|m| self.owner(m))
                        .and_then(|o| o.manager.as_ref())
                        .and_then(|m| self.owner(m))
                }),
            },
        };
        RoutingPlan {
            config: self,
            rule,
            pool,
            fast_track: hot && staging.is_some() && !partner_pool,
            hot,
            target,
        }
    }

    /// The pool's turn order over one cycle: smooth weighted round-robin (nginx's), so owners
    /// of weights 1:2:1 take turns b a b c rather than a b b c, and slot `n` of an atomic
    /// counter maps to `sequence[n % len]`: exact shares however many routes run at once.
    pub fn sequence(&self, pool: &Pool) -> Vec<Id> {
        let members: Vec<&Owner> = pool.members.iter().filter_map(|m| self.owner(m)).collect();
        let total: i64 = members.iter().map(|o| i64::from(o.weight)).sum();
        let mut current = vec![0i64; members.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, o) in current.iter_mut().zip(&members) {
                *c += i64::from(o.weight);
            }
            let Some((best, _)) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            else {
                break;
            };
            current[best] -= total;
            order.push(members[best].id.clone());
        }
        order
    }
}

/// What a plan hands the lead to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target<'c> {
    /// The pool is a partner's: the lead is offered to the partner.
    Partner(&'c Partner),
    /// The pool stages its leads in this manager's queue.
    ManagerQueue(&'c Owner),
    /// The members take turns in this order (one cycle of the weighted round-robin); when
    /// nobody can take the lead, it goes to `fallback`'s queue.
    Members {
        order: Vec<Id>,
        fallback: Option<&'c Owner>,
    },
}

/// A routing decision before the round-robin turn is taken: the rule, the pool, the target.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingPlan<'c> {
    config: &'c RoutingConfig,
    pub rule: Option<&'c RoutingRule>,
    pub pool: &'c Pool,
    pub fast_track: bool,
    /// The lead was hot when routed (its team's hot ladder applies).
    pub hot: bool,
    pub target: Target<'c>,
}

impl<'c> RoutingPlan<'c> {
    /// How many turns to take before deciding that no member can take the lead: twice round.
    pub fn turns_to_try(&self) -> usize {
        match &self.target {
            Target::Members { order, .. } => order.len() * 2,
            _ => 0,
        }
    }

    /// The member whose turn number `turn` (1, 2, 3, ...) is, if they may take the lead on
    /// `day`: present, and covering its territory and products. A daily cap is shared state:
    /// the caller takes a slot for an owner who has one.
    pub fn candidate(
        &self,
        turn: u64,
        facts: &RoutingFacts<'_>,
        day: NaiveDate,
    ) -> Option<&'c Owner> {
        let Target::Members { order, .. } = &self.target else {
            return None;
        };
        if order.is_empty() {
            return None;
        }
        let id = &order[(turn.saturating_sub(1) % order.len() as u64) as usize];
        self.config
            .owner(id)
            .filter(|o| !o.is_absent(day) && o.covers(facts) && !facts.excluded.contains(&o.id))
    }
}

/// Why a lead could not be assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// Every member is away or full and the pool has no manager to queue the lead for.
    #[error("nobody in pool {pool} can take a lead today")]
    NobodyAvailable { pool: Id },
}

fn owner_as(o: &Owner, kind: fn(Id, String, String) -> AssignedTo) -> AssignedTo {
    kind(o.id.clone(), o.name.clone(), o.email.clone())
}

/// The assignment a plan makes at `now`: to the partner, to the manager's queue, or to the
/// member whose turn it was (`picked`, found with [`RoutingPlan::candidate`]); when no member
/// was picked, to the fallback manager's queue. The SLA clock starts by the pool's team
/// (its ladder and calendar) or else the pool's own `accept_within_hours`.
pub fn assign(
    plan: &RoutingPlan<'_>,
    picked: Option<&Owner>,
    sla: &SlaConfig,
    config_version: u64,
    now: DateTime<Utc>,
) -> Result<Assignment, RoutingError> {
    let queue = |id, name, email| AssignedTo::ManagerQueue { id, name, email };
    let owner = |id, name, email| AssignedTo::Owner { id, name, email };
    let assigned_to = match (&plan.target, picked) {
        (Target::Partner(p), _) => AssignedTo::Partner {
            id: p.id.clone(),
            name: p.name.clone(),
        },
        (Target::ManagerQueue(m), _) => owner_as(m, queue),
        (Target::Members { .. }, Some(o)) => owner_as(o, owner),
        (
            Target::Members {
                fallback: Some(m), ..
            },
            None,
        ) => owner_as(m, queue),
        (Target::Members { fallback: None, .. }, None) => {
            return Err(RoutingError::NobodyAvailable {
                pool: plan.pool.id.clone(),
            })
        }
    };
    let partner = matches!(assigned_to, AssignedTo::Partner { .. });
    let (sla_deadline, track) = sla.start(&plan.pool.id, &plan.pool.sla, plan.hot, partner, now);
    Ok(Assignment {
        // A manager's queue has a deadline but no ladder: the manager assigns by hand.
        sla: track.filter(|_| !matches!(assigned_to, AssignedTo::ManagerQueue { .. })),
        assigned_to,
        pool: plan.pool.id.clone(),
        rule: plan.rule.map(|r| r.id.clone()),
        fast_track: plan.fast_track,
        config_version,
        at: now,
        sla_deadline,
        accepted_at: None,
        delivered_at: None,
        outcome: None,
    })
}

/// Why a sales-ready lead waits instead of being routed now. Neither is a fault of the lead:
/// the lead is parked and tried again (docs/domain.md, "Routing"), never dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitReason {
    /// No usable configuration with a `routing:` section is active.
    NoRoutingConfig,
    /// Every member of the pool is away, at their daily cap or not covering the lead, and the
    /// pool has no manager whose queue could take it.
    NobodyAvailable { pool: Id },
}

impl WaitReason {
    /// The reason's name, as stored and in metrics.
    pub fn code(&self) -> &'static str {
        match self {
            WaitReason::NoRoutingConfig => "no_routing_config",
            WaitReason::NobodyAvailable { .. } => "nobody_available",
        }
    }

    fn describe(&self) -> String {
        match self {
            WaitReason::NoRoutingConfig => "no routing configuration is active".to_owned(),
            WaitReason::NobodyAvailable { pool } => {
                format!("no owner in pool {pool} has capacity today")
            }
        }
    }
}

/// How soon a lead waiting for a routing configuration is tried again: a push fixes it.
pub const RETRY_WITHOUT_ROUTING: Duration = Duration::minutes(5);
/// How soon a lead nobody could take is tried again: an owner may come back or the
/// configuration change during the day; the caps reset at midnight UTC, which is never passed.
pub const RETRY_WHEN_NOBODY_AVAILABLE: Duration = Duration::hours(1);

/// A routing decision that waits: try again at `until`, for `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLater {
    pub until: DateTime<Utc>,
    pub reason: WaitReason,
}

impl RouteLater {
    pub fn no_routing_config(now: DateTime<Utc>) -> Self {
        Self {
            until: later(now, RETRY_WITHOUT_ROUTING),
            reason: WaitReason::NoRoutingConfig,
        }
    }

    /// Nobody in `pool` can take the lead today: again within the hour, and at the latest when
    /// the day's caps reset (the next midnight UTC).
    pub fn nobody_available(pool: Id, now: DateTime<Utc>) -> Self {
        let midnight = now
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let hour = later(now, RETRY_WHEN_NOBODY_AVAILABLE);
        Self {
            until: midnight.map_or(hour, |m| m.min(hour)),
            reason: WaitReason::NobodyAvailable { pool },
        }
    }
}

/// `now` plus `wait`, never past the latest time there is (no overflow, however odd `now`).
fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now.checked_add_signed(wait)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What routing decides for a lead that awaits it: an assignment, or a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    Assign(Box<Assignment>),
    Later(RouteLater),
}

/// The routing decision a plan makes at `now` ([`assign`]): when nobody in the pool can take
/// the lead, it waits ([`RouteLater`]) rather than failing.
pub fn decide(
    plan: &RoutingPlan<'_>,
    picked: Option<&Owner>,
    sla: &SlaConfig,
    config_version: u64,
    now: DateTime<Utc>,
) -> Routing {
    match assign(plan, picked, sla, config_version, now) {
        Ok(a) => Routing::Assign(Box::new(a)),
        Err(RoutingError::NobodyAvailable { pool }) => {
            Routing::Later(RouteLater::nobody_available(pool, now))
        }
    }
}

/// A sales-ready lead parked until routing can place it: kept apart from the lead (it is no
/// part of the lead's data) and listed by `until` so that it is tried again then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingWait {
    pub lead_id: LeadId,
    pub reason: WaitReason,
    /// When this wait began (the timeline entry's time).
    pub since: DateTime<Utc>,
    /// When the lead is tried again.
    pub until: DateTime<Utc>,
    /// Tries so far in this wait.
    pub tries: u32,
}

impl RoutingWait {
    /// The wait after a try that decided `later`: it goes on when `previous` waited for the
    /// same reason, else a new wait begins. `true` with a new wait: it is told on the lead's
    /// timeline, once per wait rather than once per try.
    pub fn after(
        previous: Option<&RoutingWait>,
        lead_id: LeadId,
        later: RouteLater,
        now: DateTime<Utc>,
    ) -> (RoutingWait, bool) {
        match previous.filter(|p| p.lead_id == lead_id && p.reason == later.reason) {
            Some(p) => (
                RoutingWait {
                    until: later.until,
                    tries: p.tries.saturating_add(1),
                    ..p.clone()
                },
                false,
            ),
            None => (
                RoutingWait {
                    lead_id,
                    reason: later.reason,
                    since: now,
                    until: later.until,
                    tries: 1,
                },
                true,
            ),
        }
    }
}

impl Lead {
    /// The owners and partners this lead must not go to again, however it is routed later
    /// (also after being handed back and qualifying anew): an SLA step took it from them
    /// (reassigned, returned to the queue, an offer expired), or they declined it.
    pub fn passed_over(&self) -> BTreeSet<Id> {
        self.assignment_history
            .iter()
            .filter(|a| {
                a.outcome.as_ref().is_some_and(|o| {
                    matches!(
                        o.end,
                        AssignmentEnd::Reassigned
                            | AssignmentEnd::ReturnedToQueue
                            | AssignmentEnd::OfferExpired
                            | AssignmentEnd::Declined
                    )
                })
            })
            .map(|a| a.assignee_id().to_owned())
            .collect()
    }

    /// A sales-ready lead that nobody works yet: an MQL without an assignment.
    pub fn awaits_routing(&self) -> bool {
        self.assignment.is_none() && self.stage == Stage::Mql
    }

    /// Tells on the timeline that routing waits for `wait` (once per wait): why, and when the
    /// next try comes. The lead itself does not change: it stays an MQL without assignment.
    pub fn wait_for_routing(&mut self, wait: &RoutingWait, now: DateTime<Utc>) -> Change {
        let entry = TimelineEntry::system(
            now,
            TimelineAction::RoutingWaits,
            serde_json::json!({ "reason": wait.reason, "until": wait.until }),
        )
        .because(format!(
            "routing waits: {}; next try at {}",
            wait.reason.describe(),
            wait.until.format("%Y-%m-%d %H:%M UTC")
        ));
        self.updated_at = now;
        Change::entry(entry)
    }

    /// Hands the lead to `assignment`'s target: recorded with the rule that chose it and
    /// announced as `LeadRouted` (the CRM delivery follows from it).
    pub fn assign(&mut self, assignment: Assignment, now: DateTime<Utc>) -> Change {
        let reason = match &assignment.rule {
            Some(r) => format!(
                "rule {r} matched (config version {})",
                assignment.config_version
            ),
            None => format!(
                "no rule matched: default pool (config version {})",
                assignment.config_version
            ),
        };
        let entry = TimelineEntry::system(
            now,
            TimelineAction::Routed,
            serde_json::json!({ "assignment": assignment }),
        )
        .because(reason);
        self.assignment = Some(assignment.clone());
        self.updated_at = now;
        Change::entry(entry).with_event(LeadEvent::LeadRouted { assignment })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use crate::lead::{LeadId, SubmissionContext};
    use crate::submission::SubmissionRules;

    static NOBODY: BTreeSet<Id> = BTreeSet::new();

    const YAML: &str = r#"
default_pool: inside-sales
owners:
  - { id: anna, name: Anna, email: anna@example.com, weight: 1, manager: maria }
  - { id: ben, name: Ben, email: ben@example.com, weight: 2, daily_cap: 20, manager: maria,
      absences: [{ from: 2026-12-20, to: 2027-01-03 }] }
  - { id: cem, name: Cem, email: cem@example.com, weight: 1, manager: maria,
      crm: { endpoint: "https://crm.example.com/hooks/leadflow", secret: "env:CRM_SECRET_CEM" } }
  - { id: maria, name: Maria, email: maria@example.com }
partners:
  - { id: reseller-at, name: Reseller AT, crm: { endpoint: "https://partner.example.at/leads", secret: "env:PARTNER_AT" } }
pools:
  - { id: dach-crm, members: [anna, ben, cem], sla: { accept_within_hours: 24 } }
  - { id: enterprise, members: [ben], staging_manager: maria }
  - { id: austria-partner, partner: reseller-at }
  - { id: inside-sales, members: [anna, cem] }
rules:
  - { id: austria, countries: [AT], pool: austria-partner }
  - { id: dach-crm, countries: [DE, CH], tags_any: [crm], pool: dach-crm }
  - { id: enterprise, grades: [A], pool: enterprise }
"#;

    fn config() -> RoutingConfig {
        parse_yaml(YAML).unwrap()
    }

    fn lead(pairs: &[(&str, &str)]) -> Lead {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = SubmissionRules::default().validate(&raw).unwrap();
        let at = "2026-11-22T12:00:00Z".parse().unwrap();
        Lead::capture(LeadId::new_at(at), s, &SubmissionContext::default(), at).lead
    }

    #[test]
    fn first_matching_rule_picks_the_pool_and_the_default_takes_the_rest() {
        let c = config();
        let interests = BTreeMap::from([("crm".to_owned(), 1.0)]);
        fn facts<'a>(
            l: &'a Lead,
            grade: Grade,
            interests: &'a BTreeMap<String, f64>,
        ) -> RoutingFacts<'a> {
            RoutingFacts {
                lead: l,
                grade,
                temperature: Temperature::Warm,
                interests,
                product: None,
                excluded: &NOBODY,
            }
        }
        let de = lead(&[("email", "a@b.de"), ("country", "DE")]);
        let at = lead(&[("email", "a@b.at"), ("country", "AT")]);
        let us = lead(&[("email", "a@b.com"), ("country", "US")]);
        assert_eq!(
            c.pool_for(&facts(&de, Grade::B, &interests)).1.id,
            "dach-crm"
        );
        assert_eq!(
            c.pool_for(&facts(&at, Grade::A, &interests)).1.id,
            "austria-partner",
            "first match wins"
        );
        assert_eq!(
            c.pool_for(&facts(&us, Grade::A, &interests)).1.id,
            "enterprise"
        );
        let (rule, pool) = c.pool_for(&facts(&us, Grade::C, &interests));
        assert!(rule.is_none());
        assert_eq!(
            pool.id, "inside-sales",
            "no rule: the default pool, never a dropped lead"
        );
        let cold = BTreeMap::from([("crm".to_owned(), 0.2)]);
        let f = RoutingFacts {
            lead: &de,
            grade: Grade::B,
            temperature: Temperature::Warm,
            interests: &cold,
            product: None,
            excluded: &NOBODY,
        };
        assert_eq!(
            c.pool_for(&f).1.id,
            "inside-sales",
            "a faded interest does not count"
        );
    }

    #[test]
    fn weighted_turns_are_smooth_and_exact() {
        let c = config();
        let seq = c.sequence(c.pool("dach-crm").unwrap());
        assert_eq!(seq, ["ben", "anna", "cem", "ben"]);
        let mut counts = BTreeMap::new();
        for n in 0..1000 {
            *counts.entry(seq[n % seq.len()].clone()).or_insert(0) += 1;
        }
        assert_eq!(
            counts,
            BTreeMap::from([
                ("anna".into(), 250),
                ("ben".into(), 500),
                ("cem".into(), 250)
            ])
        );
    }

    #[test]
    fn owners_cover_their_territories_and_products() {
        let yaml = YAML.replace(
            "{ id: anna, name: Anna, email: anna@example.com, weight: 1, manager: maria }",
            "{ id: anna, name: Anna, email: anna@example.com, weight: 1, manager: maria, territories: [AT, DE-8], products: [crm] }",
        );
        let c: RoutingConfig = parse_yaml(&yaml).unwrap();
        let anna = c.owner("anna").unwrap();
        let crm = BTreeMap::from([("crm".to_owned(), 1.0)]);
        let none = BTreeMap::new();
        let f =
            |l: &'static Lead, interests: &'static BTreeMap<String, f64>, product| RoutingFacts {
                lead: l,
                grade: Grade::B,
                temperature: Temperature::Warm,
                interests,
                product,
                excluded: &NOBODY,
            };
        let munich: &'static Lead = Box::leak(Box::new(lead(&[
            ("email", "a@b.de"),
            ("country", "DE"),
            ("postcode", "80331"),
        ])));
        let berlin: &'static Lead = Box::leak(Box::new(lead(&[
            ("email", "a@b.de"),
            ("country", "DE"),
            ("postcode", "10115"),
        ])));
        let vienna: &'static Lead =
            Box::leak(Box::new(lead(&[("email", "a@b.at"), ("country", "AT")])));
        let crm: &'static _ = Box::leak(Box::new(crm));
        let none: &'static _ = Box::leak(Box::new(none));
        assert!(anna.covers(&f(munich, crm, None)));
        assert!(
            anna.covers(&f(vienna, none, Some("CRM"))),
            "the lead's product counts"
        );
        assert!(
            !anna.covers(&f(berlin, crm, None)),
            "outside the postcode area"
        );
        assert!(
            !anna.covers(&f(munich, none, None)),
            "not a product anna sells"
        );
        assert!(
            c.owner("cem").unwrap().covers(&f(berlin, none, None)),
            "no limits: everything"
        );
        let bad = YAML.replace(
            "weight: 1, manager: maria }",
            "weight: 1, manager: maria, territories: [Germany] }",
        );
        assert!(parse_yaml::<RoutingConfig>(&bad)
            .unwrap_err()
            .to_string()
            .contains("territories"));
    }

    #[test]
    fn crm_targets_fall_back_to_the_routing_crm() {
        let yaml = format!(
            "crm: {{ endpoint: \"https://crm.example.com/in\", secret: \"env:MAIN\" }}\n{YAML}"
        );
        let c: RoutingConfig = parse_yaml(&yaml).unwrap();
        let owner = |id: &str| AssignedTo::Owner {
            id: id.into(),
            name: String::new(),
            email: String::new(),
        };
        assert_eq!(c.crm_for(&owner("anna")).unwrap().secret, "env:MAIN");
        assert_eq!(
            c.crm_for(&owner("cem")).unwrap().secret,
            "env:CRM_SECRET_CEM",
            "an owner's own CRM first"
        );
        let partner = AssignedTo::Partner {
            id: "reseller-at".into(),
            name: String::new(),
        };
        assert_eq!(c.crm_for(&partner).unwrap().secret, "env:PARTNER_AT");
        let secrets: Vec<&str> = c.crm_targets().iter().map(|t| t.secret.as_str()).collect();
        assert_eq!(
            secrets,
            ["env:MAIN", "env:CRM_SECRET_CEM", "env:PARTNER_AT"]
        );
        assert!(
            config().crm_for(&owner("anna")).is_none(),
            "no CRM: nothing to deliver"
        );
    }

    #[test]
    fn secrets_outside_the_deployed_prefix_are_named_where_they_are_configured() {
        let arn =
            |name: &str| format!("arn:aws:secretsmanager:eu-central-1:123456789012:secret:{name}");
        let yaml = YAML
            .replace("env:CRM_SECRET_CEM", &arn("leadflow/crm/cem-Ab12Cd"))
            .replace("env:PARTNER_AT", &arn("partners/at-Xy98Zw"));
        let yaml = format!(
            "crm: {{ endpoint: \"https://crm.example.com/in\", secret: \"{}\" }}\n{yaml}",
            arn("crm-main-Qq11Rr")
        );
        let c: RoutingConfig = parse_yaml(&yaml).unwrap();
        let outside = c.secrets_outside("leadflow/crm/");
        assert_eq!(
            outside,
            [
                (
                    "routing.crm.secret".to_owned(),
                    arn("crm-main-Qq11Rr").as_str()
                ),
                (
                    "routing.partners.reseller-at.crm.secret".to_owned(),
                    arn("partners/at-Xy98Zw").as_str()
                ),
            ]
        );
        assert!(
            c.secrets_outside("").is_empty(),
            "an empty prefix allows all"
        );
        assert!(
            config().secrets_outside("leadflow/crm/").is_empty(),
            "env: references are always readable"
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn nobody_available_waits_instead_of_failing() {
        let c = config();
        let mut excluded = BTreeSet::new();
        // inside-sales: anna and cem; both away, and the pool has no staging manager, but
        // its first member's manager (maria) queues the lead.
        excluded.extend(["anna".to_owned(), "cem".to_owned()]);
        let l = lead(&[("email", "a@b.com"), ("country", "US")]);
        let none = BTreeMap::new();
        let facts = RoutingFacts::of(&l, &none, &excluded);
        let plan = c.plan(&facts);
        let now = at("2026-11-24T10:15:00Z");
        assert!(
            matches!(decide(&plan, None, &SlaConfig::default(), 1, now), Routing::Assign(ref a)
                if matches!(a.assigned_to, AssignedTo::ManagerQueue { ref id, .. } if id == "maria")),
            "a manager's queue takes it"
        );
        // Without any manager: the lead waits, and is tried again within the hour.
        let bare: RoutingConfig = parse_yaml(
            "default_pool: p\nowners:\n  - { id: anna, name: A, email: a@example.com, daily_cap: 1 }\npools:\n  - { id: p, members: [anna] }\n",
        )
        .unwrap();
        let plan = bare.plan(&facts);
        assert_eq!(
            decide(&plan, None, &SlaConfig::default(), 1, now),
            Routing::Later(RouteLater {
                until: at("2026-11-24T11:15:00Z"),
                reason: WaitReason::NobodyAvailable { pool: "p".into() }
            })
        );
        // Late in the day: at midnight UTC, when the caps reset.
        let late = at("2026-11-24T23:30:00Z");
        assert_eq!(
            RouteLater::nobody_available("p".into(), late).until,
            at("2026-11-25T00:00:00Z")
        );
        assert_eq!(
            RouteLater::no_routing_config(now).until,
            at("2026-11-24T10:20:00Z")
        );
        // No overflow at the end of time.
        assert_eq!(
            RouteLater::no_routing_config(DateTime::<Utc>::MAX_UTC).until,
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            RouteLater::nobody_available("p".into(), DateTime::<Utc>::MAX_UTC).until,
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn a_wait_is_told_once_and_goes_on_until_its_reason_changes() {
        let mut l = lead(&[("email", "a@b.com")]);
        let t0 = at("2026-11-24T10:00:00Z");
        let (first, new) = RoutingWait::after(None, l.id, RouteLater::no_routing_config(t0), t0);
        assert!(new, "a first wait is told");
        assert_eq!((first.since, first.tries), (t0, 1));
        let t1 = first.until;
        let (second, new) =
            RoutingWait::after(Some(&first), l.id, RouteLater::no_routing_config(t1), t1);
        assert!(!new, "the same wait goes on, untold");
        assert_eq!((second.since, second.tries), (t0, 2));
        assert_eq!(second.until, at("2026-11-24T10:10:00Z"));
        let (third, new) = RoutingWait::after(
            Some(&second),
            l.id,
            RouteLater::nobody_available("p".into(), t1),
            t1,
        );
        assert!(new, "another reason is another wait");
        assert_eq!((third.since, third.tries), (t1, 1));

        let change = l.wait_for_routing(&third, t1);
        assert_eq!(change.timeline.len(), 1);
        assert!(change.events.is_empty(), "a wait announces nothing");
        let entry = &change.timeline[0];
        assert_eq!(entry.action, TimelineAction::RoutingWaits);
        assert_eq!(
            entry.reason.as_deref(),
            Some("routing waits: no owner in pool p has capacity today; next try at 2026-11-24 11:05 UTC")
        );
        assert_eq!(entry.detail["reason"]["kind"], "nobody_available");
        assert!(l.awaits_routing() || l.stage != crate::stage::Stage::Mql);
        assert!(l.assignment.is_none(), "the lead stays unassigned");
    }

    #[test]
    fn turn_orders_stay_small_under_the_bounds() {
        let yaml = YAML.replace("weight: 2,", "weight: 100,");
        let c: RoutingConfig = parse_yaml(&yaml).unwrap();
        assert_eq!(c.sequence(c.pool("dach-crm").unwrap()).len(), 102);
        let err = parse_yaml::<RoutingConfig>(&YAML.replace("weight: 2,", "weight: 1000000000,"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("owners.ben.weight must be 1 to 100"),
            "{err}"
        );
        let err = parse_yaml::<RoutingConfig>(&YAML.replace("daily_cap: 20", "daily_cap: 0"))
            .unwrap_err();
        assert!(err.to_string().contains("owners.ben.daily_cap"), "{err}");
    }

    #[test]
    fn absences() {
        let c = config();
        let ben = c.owner("ben").unwrap();
        assert!(ben.is_absent("2026-12-24".parse().unwrap()));
        assert!(ben.is_absent("2027-01-03".parse().unwrap()));
        assert!(!ben.is_absent("2027-01-04".parse().unwrap()));
    }

    #[test]
    fn references_are_checked() {
        for (bad, says) in [
            (
                YAML.replace("default_pool: inside-sales", "default_pool: nowhere"),
                "default_pool",
            ),
            (
                YAML.replace("members: [anna, cem]", "members: [anna, zoe]"),
                "zoe",
            ),
            (YAML.replace("pool: enterprise }", "pool: vip }"), "vip"),
            (YAML.replace("weight: 2,", "weight: 0,"), "weight"),
            (
                YAML.replace("https://crm.example.com", "http://crm.example.com"),
                "https",
            ),
            (YAML.replace("env:CRM_SECRET_CEM", "hunter2"), "secret"),
        ] {
            let err = parse_yaml::<RoutingConfig>(&bad).unwrap_err();
            assert!(err.to_string().contains(says), "{says}: {err}");
        }
    }
}
