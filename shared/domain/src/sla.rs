//! Service levels of the handover (docs/domain.md, "Handover and SLA"): by when an owner must
//! accept a lead, what happens when nobody does (each team's ladder of reminders, escalation
//! and reassignment, on its business calendar), when the clock stops, and how long a lead
//! waited. Routing starts the clock, the CRM's statuses stop it, sla-tick takes the steps
//! ([`crate::ladder`]).
//!
//! The `sla:` section of the configuration:
//!
//! ```yaml
//! sla:
//!   calendars:
//!     - { id: dach, time_zone: Europe/Berlin, working_days: [mon, tue, wed, thu, fri],
//!         working_hours: "08:00-18:00", holidays: [2026-12-24, 2026-12-25] }
//!   teams:
//!     - id: dach-sales
//!       calendar: dach
//!       pools: [dach-crm, inside-sales]
//!       ladder:                      # after D of working time without acceptance
//!         - { after: 2d, action: remind_owner }
//!         - { after: 1d, action: remind_with_manager }
//!         - { after: 1d, action: reassign }
//!       hot_ladder:                  # hot leads (optional)
//!         - { after: 15m, action: remind_owner }
//!         - { after: 45m, action: escalate_to_manager }
//!         - { after: 1h, action: reassign }
//!       when_owner_away: reassign    # an away owner's due lead moves on at once
//!       notify: { endpoint: "https://chat.example.com/hooks/sales", secret: "env:TEAM_SECRET" }
//!     - { id: partners, calendar: dach, pools: [austria-partner], offer_expires_after: 1d }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::assignment::{Assignment, AssignmentEnd, AssignmentOutcome, Id, SlaAction, SlaTrack};
use crate::calendar::{BusinessCalendar, WorkTime};
use crate::stage::Stage;
use crate::webhook::CrmTarget;

/// How fast the owners of a pool must accept a lead (`sla:` of a pool in the routing config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub accept_within_hours: u32,
}

impl Default for SlaPolicy {
    /// A day: the short end of the 24 to 48 hours sales commonly agrees to.
    fn default() -> Self {
        Self {
            accept_within_hours: 24,
        }
    }
}

/// The longest any SLA duration may be (a pool's `accept_within_hours`, a ladder step, an
/// offer's expiry): 90 days. Longer is no service level, and the bound keeps every deadline
/// far from the end of time.
pub const MAX_SLA_HOURS: u32 = 90 * 24;

impl SlaPolicy {
    /// What is wrong with the policy, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        (!(1..=MAX_SLA_HOURS).contains(&self.accept_within_hours))
            .then_some("accept_within_hours must be 1 to 2160 (90 days)")
    }

    /// By when a lead assigned at `assigned_at` must be accepted (never past the latest time
    /// there is, however long the policy).
    pub fn deadline(&self, assigned_at: DateTime<Utc>) -> DateTime<Utc> {
        assigned_at
            .checked_add_signed(Duration::hours(i64::from(self.accept_within_hours)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// One step of a ladder: after this much working time without acceptance (counted from the
/// assignment for the first step, from the step before for the others), do this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaStep {
    pub after: WorkTime,
    pub action: SlaAction,
}

/// What happens to the due leads of an owner who is away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenOwnerAway {
    /// The ladder goes on as for anyone else.
    #[default]
    FollowLadder,
    /// The first due step reassigns the lead (no reminders to someone who is away).
    Reassign,
}

/// A team's service level: the pools it works, its calendar, its ladders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: Id,
    /// The calendar the team's working time runs on; none: every minute counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<Id>,
    pub pools: Vec<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ladder: Vec<SlaStep>,
    /// The ladder of hot leads; none: hot leads climb `ladder` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_ladder: Option<Vec<SlaStep>>,
    /// How long a partner has to accept an offer before it goes to the next partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_expires_after: Option<WorkTime>,
    #[serde(default)]
    pub when_owner_away: WhenOwnerAway,
    /// Where the team's SLA notifications go (a chat incoming webhook works); none: to the
    /// CRM of the person concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<CrmTarget>,
}

impl Team {
    /// The ladder for a lead: the hot one for hot leads, when the team has one.
    pub fn ladder(&self, hot: bool) -> &[SlaStep] {
        match (&self.hot_ladder, hot) {
            (Some(l), true) => l,
            _ => &self.ladder,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    id: Id,
    time_zone: String,
    working_days: Vec<String>,
    working_hours: String,
    #[serde(default)]
    holidays: Vec<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    #[serde(default)]
    calendars: Vec<RawCalendar>,
    #[serde(default)]
    teams: Vec<Team>,
}

/// The `sla:` section: calendars and teams, validated on parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaConfig {
    calendars: BTreeMap<Id, BusinessCalendar>,
    teams: Vec<Team>,
}

impl<'de> Deserialize<'de> for SlaConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSla::deserialize(d)?;
        SlaConfig::validate(raw).map_err(serde::de::Error::custom)
    }
}

/// Whether a working time is longer than [`MAX_SLA_HOURS`] (working days counted as whole
/// days: a working day is never longer).
fn too_long(t: WorkTime) -> bool {
    match t {
        WorkTime::Minutes(m) => m > MAX_SLA_HOURS * 60,
        WorkTime::Days(d) => d > MAX_SLA_HOURS / 24,
    }
}

/// The steps that only remind (they must come first).
fn reminds(a: SlaAction) -> bool {
    matches!(a, SlaAction::RemindOwner | SlaAction::RemindWithManager)
}

/// What is wrong with a ladder, if anything: it must start with a reminder, take no step
/// after one that took the lead away, wait more than nothing before each step, and not offer
/// expiry (partner offers expire by `offer_expires_after`).
fn ladder_problem(ladder: &[SlaStep]) -> Option<String> {
    const MAX_STEPS: usize = 10;
    if ladder.len() > MAX_STEPS {
        return Some(format!("at most {MAX_STEPS} steps"));
    }
    for (i, step) in ladder.iter().enumerate() {
        if step.after.is_zero() {
            return Some(format!("[{i}].after must be more than nothing"));
        }
        if too_long(step.after) {
            return Some(format!(
                "[{i}].after must be at most 90 days (90d or 2160h)"
            ));
        }
        if step.action == SlaAction::ExpireOffer {
            return Some(format!(
                "[{i}]: expire_offer is not a ladder step; partner offers expire after offer_expires_after"
            ));
        }
        if i == 0 && !reminds(step.action) {
            return Some(format!(
                "[0]: a ladder starts with a reminder (remind_owner or remind_with_manager), not {}",
                action_name(step.action)
            ));
        }
        if i > 0 && ladder[i - 1].action.takes_the_lead() {
            return Some(format!(
                "[{i}]: nothing can follow {}, which takes the lead away",
                action_name(ladder[i - 1].action)
            ));
        }
        if i > 0 && reminds(step.action) && !reminds(ladder[i - 1].action) {
            return Some(format!(
                "[{i}]: {} cannot come after {}",
                action_name(step.action),
                action_name(ladder[i - 1].action)
            ));
        }
    }
    None
}

fn action_name(a: SlaAction) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl SlaConfig {
    fn validate(raw: RawSla) -> Result<Self, String> {
        let mut calendars = BTreeMap::new();
        for c in raw.calendars {
            let holidays: BTreeSet<NaiveDate> = c.holidays.into_iter().collect();
            let calendar =
                BusinessCalendar::new(&c.time_zone, &c.working_days, &c.working_hours, holidays)
                    .map_err(|e| format!("calendars.{}: {e}", c.id))?;
            if calendars.insert(c.id.clone(), calendar).is_some() {
                return Err(format!("calendar id {:?} is used twice", c.id));
            }
        }
        let mut team_ids = BTreeSet::new();
        let mut pools = BTreeSet::new();
        for t in &raw.teams {
            if !team_ids.insert(t.id.clone()) {
                return Err(format!("team id {:?} is used twice", t.id));
            }
            if let Some(c) = t.calendar.as_ref().filter(|c| !calendars.contains_key(*c)) {
                return Err(format!("teams.{}.calendar {c:?} is not a calendar", t.id));
            }
            if t.pools.is_empty() {
                return Err(format!("teams.{}.pools must name at least one pool", t.id));
            }
            if let Some(p) = t.pools.iter().find(|p| !pools.insert((*p).clone())) {
                return Err(format!(
                    "teams.{}.pools: pool {p:?} belongs to two teams",
                    t.id
                ));
            }
            if let Some(problem) = ladder_problem(&t.ladder) {
                return Err(format!("teams.{}.ladder{problem}", t.id));
            }
            if let Some(problem) = t.hot_ladder.as_deref().and_then(ladder_problem) {
                return Err(format!("teams.{}.hot_ladder{problem}", t.id));
            }
            if t.hot_ladder.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!(
                    "teams.{}.hot_ladder must have steps (leave it out to use ladder)",
                    t.id
                ));
            }
            if t.offer_expires_after.is_some_and(WorkTime::is_zero) {
                return Err(format!(
                    "teams.{}.offer_expires_after must be more than nothing",
                    t.id
                ));
            }
            if t.offer_expires_after.is_some_and(too_long) {
                return Err(format!(
                    "teams.{}.offer_expires_after must be at most 90 days (90d or 2160h)",
                    t.id
                ));
            }
            if let Some(n) = &t.notify {
                n.check()
                    .map_err(|e| format!("teams.{}.notify: {e}", t.id))?;
            }
        }
        Ok(Self {
            calendars,
            teams: raw.teams,
        })
    }

    pub fn teams(&self) -> &[Team] {
        &self.teams
    }

    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.id == id)
    }

    /// The team that works `pool`, if any.
    pub fn team_of_pool(&self, pool: &str) -> Option<&Team> {
        self.teams
            .iter()
            .find(|t| t.pools.iter().any(|p| p == pool))
    }

    /// The calendar `team`'s working time runs on.
    pub fn calendar(&self, team: &Team) -> BusinessCalendar {
        team.calendar
            .as_ref()
            .and_then(|c| self.calendars.get(c))
            .cloned()
            .unwrap_or_else(BusinessCalendar::always)
    }

    /// The pools the teams name (routing checks they exist).
    pub fn pools(&self) -> impl Iterator<Item = (&str, &str)> {
        self.teams
            .iter()
            .flat_map(|t| t.pools.iter().map(move |p| (t.id.as_str(), p.as_str())))
    }

    /// The clock of a new assignment to `pool` at `at`: its deadline, and the ladder it
    /// climbs. A team's first step (or a partner's offer time) sets the deadline, counted in
    /// working time; a pool without a team keeps its own `accept_within_hours`, in raw time.
    pub fn start(
        &self,
        pool: &str,
        pool_policy: &SlaPolicy,
        hot: bool,
        partner: bool,
        at: DateTime<Utc>,
    ) -> (DateTime<Utc>, Option<SlaTrack>) {
        let Some(team) = self.team_of_pool(pool) else {
            return (pool_policy.deadline(at), None);
        };
        let calendar = self.calendar(team);
        let first = if partner {
            team.offer_expires_after
        } else {
            team.ladder(hot).first().map(|s| s.after)
        };
        let Some(first) = first else {
            return (pool_policy.deadline(at), None);
        };
        let due = calendar.add(at, first);
        let track = SlaTrack {
            team: Some(team.id.clone()),
            hot: hot && !partner && team.hot_ladder.is_some(),
            steps_taken: 0,
            next_due: Some(due),
            steps: Vec::new(),
        };
        (due, Some(track))
    }

    /// How an assignment ended at `at`, with the waits: raw, working time on its team's
    /// calendar, and the system's and the person's part (split at the delivery).
    pub fn outcome(
        &self,
        assignment: &Assignment,
        end: AssignmentEnd,
        at: DateTime<Utc>,
    ) -> AssignmentOutcome {
        let calendar = assignment
            .sla
            .as_ref()
            .and_then(|t| t.team.as_deref())
            .and_then(|t| self.team(t))
            .map(|t| self.calendar(t))
            .unwrap_or_else(BusinessCalendar::always);
        let delivered = assignment
            .delivered_at
            .map(|d| d.clamp(assignment.at, at.max(assignment.at)));
        AssignmentOutcome {
            end,
            at,
            waited_seconds: (at - assignment.at).num_seconds().max(0),
            waited_working_seconds: calendar.working_between(assignment.at, at).num_seconds(),
            system_seconds: delivered.map(|d| (d - assignment.at).num_seconds()),
            person_seconds: delivered.map(|d| (at - d).num_seconds().max(0)),
        }
    }
}

impl Assignment {
    /// Sales took the lead (its CRM reported `accepted` or any later status): the SLA clock
    /// stops at the first acceptance, and a later report does not move it.
    pub fn accept(&mut self, at: DateTime<Utc>) {
        self.accepted_at.get_or_insert(at);
        if let Some(track) = self.sla.as_mut() {
            track.next_due = None;
        }
    }

    /// Whether the SLA no longer runs for a lead at `stage`: its owner accepted it, or the
    /// lead has moved on past MQL (accepted, qualified, won, rejected or handed back).
    pub fn is_accepted(&self, stage: Stage) -> bool {
        self.accepted_at.is_some()
            || !matches!(
                stage,
                Stage::Raw | Stage::Inquiry | Stage::Engaged | Stage::Mql
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::AssignedTo;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn assignment() -> Assignment {
        let now = at("2026-11-20T17:55:00Z");
        Assignment {
            assigned_to: AssignedTo::Partner {
                id: "p".into(),
                name: "P".into(),
            },
            pool: "pool".into(),
            rule: None,
            fast_track: false,
            config_version: 1,
            at: now,
            sla_deadline: SlaPolicy::default().deadline(now),
            accepted_at: None,
            sla: None,
            delivered_at: None,
            outcome: None,
        }
    }

    #[test]
    fn the_deadline_is_the_assignment_plus_the_policy() {
        let p = SlaPolicy {
            accept_within_hours: 48,
        };
        assert_eq!(
            p.deadline(at("2026-11-20T17:55:00Z")),
            at("2026-11-22T17:55:00Z")
        );
        assert_eq!(SlaPolicy::default().accept_within_hours, 24);
        let forever = SlaPolicy {
            accept_within_hours: u32::MAX,
        };
        assert_eq!(
            forever.deadline(DateTime::<Utc>::MAX_UTC - Duration::hours(1)),
            DateTime::<Utc>::MAX_UTC,
            "no overflow"
        );
        assert!(SlaPolicy {
            accept_within_hours: 0
        }
        .problem()
        .is_some());
        assert!(SlaPolicy::default().problem().is_none());
        for (hours, ok) in [(2160, true), (2161, false), (u32::MAX, false)] {
            let p = SlaPolicy {
                accept_within_hours: hours,
            };
            assert_eq!(p.problem().is_none(), ok, "{hours} h");
        }
    }

    #[test]
    fn the_first_acceptance_stops_the_clock() {
        let mut a = assignment();
        assert!(!a.is_accepted(Stage::Mql));
        a.accept(at("2026-11-21T09:00:00Z"));
        a.accept(at("2026-11-21T10:00:00Z"));
        assert_eq!(a.accepted_at, Some(at("2026-11-21T09:00:00Z")));
        assert!(a.is_accepted(Stage::Mql));
    }

    #[test]
    fn a_lead_past_mql_counts_as_accepted() {
        let a = assignment();
        use Stage::*;
        for stage in [Raw, Inquiry, Engaged, Mql] {
            assert!(!a.is_accepted(stage), "{stage}: the clock runs");
        }
        for stage in [Sal, Sql, Opportunity, Customer, Rejected, Recycled] {
            assert!(a.is_accepted(stage), "{stage}: the clock stopped");
        }
    }
}
