//! Service levels of the handover (docs/domain.md, "Handover and SLA"): by when an owner must
//! accept a lead, and when the clock stops. Routing sets the deadline, the CRM's statuses stop
//! the clock; the SLA timers (reminders, escalation, reassignment) build on both.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::assignment::Assignment;
use crate::stage::Stage;

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

impl SlaPolicy {
    /// What is wrong with the policy, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        (self.accept_within_hours == 0).then_some("accept_within_hours must be at least 1")
    }

    /// By when a lead assigned at `assigned_at` must be accepted (never past the latest time
    /// there is, however long the policy).
    pub fn deadline(&self, assigned_at: DateTime<Utc>) -> DateTime<Utc> {
        assigned_at
            .checked_add_signed(Duration::hours(i64::from(self.accept_within_hours)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Assignment {
    /// Sales took the lead (its CRM reported `accepted` or any later status): the SLA clock
    /// stops at the first acceptance, and a later report does not move it.
    pub fn accept(&mut self, at: DateTime<Utc>) {
        self.accepted_at.get_or_insert(at);
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
