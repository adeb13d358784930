//! The SLA ladder (docs/domain.md, "Handover and SLA"): which step of its team's ladder a lead
//! is due for, and what taking the step does to the lead. sla-tick finds the due leads and
//! takes their steps; a step that takes the lead away gets the next assignment from routing
//! ([`next_assignment`]), which needs the pool's turns, so the caller asks for it first.

use chrono::{DateTime, Utc};

use crate::assignment::{AssignedTo, Assignment, AssignmentEnd, Person, SlaAction, SlaStepTaken};
use crate::change::Change;
use crate::events::LeadEvent;
use crate::lead::Lead;
use crate::routing::{RoutingConfig, RoutingPlan};
use crate::sla::{SlaConfig, WhenOwnerAway};
use crate::timeline::{TimelineAction, TimelineEntry};

/// What a lead's ladder asks for at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing now: no ladder, or its next step is not due yet.
    Nothing,
    /// The ladder no longer applies (the lead was accepted or moved on, its team or its last
    /// step is gone): the clock stops without a step.
    Stop,
    /// Step number `step` of the ladder, due at `due`, does `action`.
    Step {
        step: u32,
        action: SlaAction,
        due: DateTime<Utc>,
    },
}

/// The step `lead` is due for at `now`. `away` says whether an owner is away today (the
/// configuration's absences and those set through the API): with the team's
/// `when_owner_away: reassign`, an away owner's due lead is reassigned at once.
pub fn due(lead: &Lead, sla: &SlaConfig, now: DateTime<Utc>, away: impl Fn(&str) -> bool) -> Due {
    let Some(a) = &lead.assignment else {
        return Due::Nothing;
    };
    let Some(track) = &a.sla else {
        return Due::Nothing;
    };
    let Some(due) = track.next_due else {
        return Due::Nothing;
    };
    if a.is_accepted(lead.stage) {
        return Due::Stop;
    }
    if due > now {
        return Due::Nothing;
    }
    let step = track.steps_taken;
    let partner = matches!(a.assigned_to, AssignedTo::Partner { .. });
    let declined = a
        .outcome
        .as_ref()
        .is_some_and(|o| o.end == AssignmentEnd::Declined);
    if partner && declined {
        return Due::Step {
            step,
            action: SlaAction::ExpireOffer,
            due,
        };
    }
    let Some(team) = track.team.as_deref().and_then(|t| sla.team(t)) else {
        return Due::Stop;
    };
    if partner {
        return Due::Step {
            step,
            action: SlaAction::ExpireOffer,
            due,
        };
    }
    let Some(s) = team.ladder(track.hot).get(step as usize) else {
        return Due::Stop;
    };
    let owner_away = matches!(&a.assigned_to, AssignedTo::Owner { id, .. } if away(id.as_str()));
    let action = if owner_away
        && team.when_owner_away == WhenOwnerAway::Reassign
        && !s.action.takes_the_lead()
    {
        SlaAction::Reassign
    } else {
        s.action
    };
    Due::Step { step, action, due }
}

/// The assignment a step that takes the lead away gives it to: routing's `plan` with the
/// owner picked by the pool's turns (`Reassign`, `ExpireOffer`: the plan was made with
/// everyone passed over excluded), or the manager's queue (`ReturnToQueue`). `None`: nobody
/// is left to take it.
pub fn next_assignment(
    action: SlaAction,
    lead: &Lead,
    plan: Option<(&RoutingPlan<'_>, Option<&crate::routing::Owner>)>,
    routing: &RoutingConfig,
    sla: &SlaConfig,
    config_version: u64,
    now: DateTime<Utc>,
) -> Option<Assignment> {
    match action {
        SlaAction::ReturnToQueue => {
            let current = lead.assignment.as_ref()?;
            routing.queue_assignment(
                &current.pool,
                current.assignee_id(),
                sla,
                config_version,
                now,
            )
        }
        SlaAction::Reassign | SlaAction::ExpireOffer => {
            let (plan, picked) = plan?;
            crate::routing::assign(plan, picked, sla, config_version, now).ok()
        }
        _ => None,
    }
}

/// Why a step was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The lead is not at that step any more (another tick took it, or it was accepted or
    /// reassigned meanwhile).
    #[error("step {0} of the lead's ladder was taken already or no longer applies")]
    NotAtStep(u32),
}

fn person(id: &str, routing: &RoutingConfig) -> Option<Person> {
    routing.owner(id).map(|o| Person {
        id: o.id.clone(),
        name: o.name.clone(),
        email: o.email.clone(),
    })
}

/// The manager of an assignment's owner: the owner's manager, else the pool's staging
/// manager.
fn manager_of(a: &Assignment, routing: &RoutingConfig) -> Option<Person> {
    let owner = routing.owner(a.assignee_id());
    owner
        .and_then(|o| o.manager.as_deref())
        .or_else(|| {
            routing
                .pool(&a.pool)
                .and_then(|p| p.staging_manager.as_deref())
        })
        .filter(|m| *m != a.assignee_id())
        .and_then(|m| person(m, routing))
}

impl Lead {
    /// Stops the SLA clock of the current assignment without a step (it was accepted, or its
    /// ladder no longer applies). Nothing goes on the timeline: the reason already did.
    pub fn stop_sla(&mut self, now: DateTime<Utc>) -> Change {
        if let Some(track) = self.assignment.as_mut().and_then(|a| a.sla.as_mut()) {
            track.next_due = None;
            self.updated_at = now;
        }
        Change::default()
    }

    /// Takes step `step` of the ladder (due at `due`) at `now`. A step that takes the lead
    /// away gives it to `next` ([`next_assignment`]; `None`: nobody is left, and the lead
    /// stays). Refused when the lead is not at that step: each step is taken once, however
    /// many ticks try.
    #[allow(clippy::too_many_arguments)]
    pub fn take_sla_step(
        &mut self,
        step: u32,
        action: SlaAction,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        sla: &SlaConfig,
        routing: &RoutingConfig,
        next: Option<Assignment>,
    ) -> Result<Change, StepError> {
        let stage = self.stage;
        let a = self
            .assignment
            .as_mut()
            .filter(|a| !a.is_accepted(stage))
            .ok_or(StepError::NotAtStep(step))?;
        let track = a
            .sla
            .as_mut()
            .filter(|t| t.steps_taken == step && t.next_due.is_some())
            .ok_or(StepError::NotAtStep(step))?;
        track.steps.push(SlaStepTaken {
            step,
            action,
            due,
            at: now,
        });
        track.steps_taken = step + 1;
        track.next_due = None;
        self.updated_at = now;
        let detail = |a: &Assignment| {
            serde_json::json!({
                "step": step, "action": action, "due": due, "assignee": a.assignee_id(),
            })
        };
        if !action.takes_the_lead() {
            let team = track.team.as_deref().and_then(|t| sla.team(t));
            let calendar = team.map(|t| sla.calendar(t));
            let following = team.and_then(|t| t.ladder(track.hot).get(step as usize + 1));
            track.next_due = following.zip(calendar).map(|(s, c)| c.add(due, s.after));
            let snapshot = a.clone();
            let manager = manager_of(a, routing);
            let (entry, event) = match (action, manager) {
                (SlaAction::EscalateToManager, Some(manager)) => (
                    TimelineAction::SlaEscalated,
                    Some(LeadEvent::SlaEscalated {
                        step,
                        due,
                        assignment: snapshot.clone(),
                        manager,
                    }),
                ),
                // Nobody to escalate to: the step is on the timeline, nobody is told.
                (SlaAction::EscalateToManager, None) => (TimelineAction::SlaEscalated, None),
                (_, manager) => (
                    TimelineAction::SlaReminder,
                    Some(LeadEvent::SlaReminderDue {
                        step,
                        action,
                        due,
                        assignment: snapshot.clone(),
                        cc: manager.filter(|_| action == SlaAction::RemindWithManager),
                    }),
                ),
            };
            let mut entry = TimelineEntry::system(now, entry, detail(&snapshot));
            if event.is_none() {
                entry.reason = Some("no manager is configured to escalate to".into());
            }
            let mut change = Change::entry(entry);
            change.events.extend(event);
            return Ok(change);
        }
        let Some(next) = next else {
            let entry = TimelineEntry::system(now, TimelineAction::SlaExhausted, detail(a))
                .because("nobody is left to take the lead; it stays where it is");
            return Ok(Change::entry(entry));
        };
        let mut old = self.assignment.take().ok_or(StepError::NotAtStep(step))?;
        let end = match (action, old.outcome.as_ref().map(|o| o.end)) {
            (_, Some(AssignmentEnd::Declined)) => AssignmentEnd::Declined,
            (SlaAction::ExpireOffer, _) => AssignmentEnd::OfferExpired,
            (SlaAction::ReturnToQueue, _) => AssignmentEnd::ReturnedToQueue,
            _ => AssignmentEnd::Reassigned,
        };
        if end != AssignmentEnd::Declined {
            old.outcome = Some(sla.outcome(&old, end, now));
        }
        let timeline = match end {
            AssignmentEnd::ReturnedToQueue => TimelineAction::ReturnedToQueue,
            AssignmentEnd::OfferExpired | AssignmentEnd::Declined => TimelineAction::OfferExpired,
            _ => TimelineAction::Reassigned,
        };
        let mut entry_detail = detail(&old);
        entry_detail["to"] = serde_json::json!(next.assignee_id());
        let mut change = Change::entry(TimelineEntry::system(now, timeline, entry_detail));
        change.events.push(match end {
            AssignmentEnd::OfferExpired | AssignmentEnd::Declined => {
                LeadEvent::PartnerOfferExpired {
                    offer: old.clone(),
                    next: Some(next.clone()),
                }
            }
            _ => LeadEvent::LeadReassigned {
                from: old.clone(),
                to: next.clone(),
                step: Some(step),
            },
        });
        let from = old.assignee_id().to_owned();
        self.assignment_history.push(old);
        let mut routed = self.assign(next, now);
        // Not a rule's doing: the ladder's.
        if let Some(entry) = routed.timeline.first_mut() {
            let action = serde_json::to_value(action).unwrap_or_default();
            entry.reason = Some(format!(
                "SLA step {step} ({}) took the lead from {from}",
                action.as_str().unwrap_or_default()
            ));
        }
        change.timeline.extend(routed.timeline);
        change.events.extend(routed.events);
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::config::LeadflowConfig;
    use crate::lead::{LeadId, SubmissionContext};
    use crate::routing::{Owner, RoutingFacts};
    use crate::scoring::{Grade, Temperature};
    use crate::stage::Stage;
    use crate::submission::SubmissionRules;

    const YAML: &str = r#"
scoring:
  thresholds: { engaged: 20, mql: 60 }
routing:
  default_pool: dach
  owners:
    - { id: anna, name: Anna, email: anna@example.com, manager: maria }
    - { id: ben, name: Ben, email: ben@example.com, manager: maria }
    - { id: cem, name: Cem, email: cem@example.com, manager: maria }
    - { id: maria, name: Maria, email: maria@example.com }
  partners:
    - { id: p1, name: P1, crm: { endpoint: "https://p1.example.com/in", secret: "env:P1" } }
    - { id: p2, name: P2, crm: { endpoint: "https://p2.example.com/in", secret: "env:P2" } }
  pools:
    - { id: dach, members: [anna, ben, cem] }
    - { id: resellers, partners: [p1, p2], staging_manager: maria }
  rules:
    - { id: austria, countries: [AT], pool: resellers }
sla:
  calendars:
    - { id: berlin, time_zone: Europe/Berlin, working_days: [mon, tue, wed, thu, fri],
        working_hours: "08:00-18:00", holidays: [2026-12-24, 2026-12-25] }
  teams:
    - id: dach-sales
      calendar: berlin
      pools: [dach]
      ladder:
        - { after: 2d, action: remind_owner }
        - { after: 1d, action: remind_with_manager }
        - { after: 1d, action: reassign }
      hot_ladder:
        - { after: 15m, action: remind_owner }
        - { after: 45m, action: escalate_to_manager }
        - { after: 1h, action: return_to_queue }
      when_owner_away: reassign
    - { id: partners, calendar: berlin, pools: [resellers], offer_expires_after: 4h }
"#;

    fn config() -> LeadflowConfig {
        let scoring = crate::scoring::EXAMPLE_YAML;
        let yaml = YAML.replace(
            "scoring:\n  thresholds: { engaged: 20, mql: 60 }\n",
            scoring,
        );
        LeadflowConfig::parse(&yaml).expect("valid")
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn mql(country: &str, temperature: Temperature) -> Lead {
        let raw = vec![
            ("email".to_owned(), "lead@example.de".to_owned()),
            ("country".to_owned(), country.to_owned()),
        ];
        let s = SubmissionRules::default().validate(&raw).unwrap();
        let t = at("2026-11-20T10:00:00Z");
        let mut lead = Lead::capture(LeadId::new_at(t), s, &SubmissionContext::default(), t).lead;
        lead.stage = Stage::Mql;
        lead.qualification = Some(crate::lead::Qualification {
            score: crate::scoring::Points::ZERO,
            band: crate::scoring::ScoreBand::Mql,
            grade: Grade::B,
            temperature,
            product: None,
            config_version: 1,
            at: t,
        });
        lead
    }

    /// Routes as the route function does: the plan, then turns `turns` of the round-robin.
    fn route(
        c: &LeadflowConfig,
        lead: &mut Lead,
        turns: &mut u64,
        extra_excluded: &[&str],
        now: DateTime<Utc>,
    ) -> Option<Assignment> {
        let routing = c.routing.as_ref().unwrap();
        let interests = BTreeMap::new();
        let mut excluded = lead.passed_over();
        excluded.extend(extra_excluded.iter().map(|s| s.to_string()));
        let q = lead.qualification.clone().unwrap();
        let facts = RoutingFacts {
            lead,
            grade: q.grade,
            temperature: q.temperature,
            interests: &interests,
            product: None,
            excluded: &excluded,
        };
        let plan = routing.plan(&facts);
        let mut picked: Option<&Owner> = None;
        for _ in 0..plan.turns_to_try() {
            *turns += 1;
            if let Some(o) = plan.candidate(*turns, &facts, now.date_naive()) {
                picked = Some(o);
                break;
            }
        }
        crate::routing::assign(&plan, picked, &c.sla, 1, now).ok()
    }

    fn take(
        c: &LeadflowConfig,
        lead: &mut Lead,
        turns: &mut u64,
        now: DateTime<Utc>,
    ) -> Option<(SlaAction, Change)> {
        let routing = c.routing.as_ref().unwrap();
        match due(lead, &c.sla, now, |_| false) {
            Due::Step { step, action, due } => {
                let next = if action.takes_the_lead() {
                    let current = lead.assignment.clone().unwrap();
                    match action {
                        SlaAction::ReturnToQueue => {
                            next_assignment(action, lead, None, routing, &c.sla, 1, now)
                        }
                        _ => route(c, lead, turns, &[current.assignee_id()], now),
                    }
                } else {
                    None
                };
                let change = lead
                    .take_sla_step(step, action, due, now, &c.sla, routing, next)
                    .unwrap();
                Some((action, change))
            }
            _ => None,
        }
    }

    fn names(change: &Change) -> Vec<&'static str> {
        change.events.iter().map(LeadEvent::name).collect()
    }

    #[test]
    fn remind_then_remind_with_the_manager_then_reassign_on_working_time() {
        let c = config();
        let mut turns = 0;
        let mut lead = mql("DE", Temperature::Warm);
        // Routed on Friday 20 November 2026 at 17:55 in Berlin.
        let routed = at("2026-11-20T16:55:00Z");
        let a = route(&c, &mut lead, &mut turns, &[], routed).unwrap();
        assert_eq!(a.assignee_id(), "anna");
        // Two working days of ten hours: 5 min on Friday, Monday, and Tuesday until 17:55.
        let first = at("2026-11-24T16:55:00Z");
        assert_eq!(a.sla_deadline, first);
        assert_eq!(a.sla.as_ref().unwrap().next_due, Some(first));
        lead.assign(a, routed);

        assert_eq!(
            due(&lead, &c.sla, at("2026-11-21T12:00:00Z"), |_| false),
            Due::Nothing,
            "not on Saturday"
        );
        assert!(take(
            &c,
            &mut lead,
            &mut turns,
            first - chrono::Duration::minutes(1)
        )
        .is_none());
        let (action, change) = take(&c, &mut lead, &mut turns, first).unwrap();
        assert_eq!(action, SlaAction::RemindOwner);
        assert_eq!(names(&change), ["SlaReminderDue"]);
        assert!(matches!(
            &change.events[0],
            LeadEvent::SlaReminderDue { cc: None, .. }
        ));
        assert_eq!(change.timeline[0].action, TimelineAction::SlaReminder);

        // One working day later: Wednesday 17:55.
        let second = at("2026-11-25T16:55:00Z");
        let track = lead.assignment.as_ref().unwrap().sla.clone().unwrap();
        assert_eq!((track.steps_taken, track.next_due), (1, Some(second)));
        let (_, change) = take(
            &c,
            &mut lead,
            &mut turns,
            second + chrono::Duration::minutes(3),
        )
        .unwrap();
        match &change.events[0] {
            LeadEvent::SlaReminderDue {
                cc: Some(m), due, ..
            } => {
                assert_eq!(
                    (m.id.as_str(), *due),
                    ("maria", second),
                    "the manager in copy; due, not when the tick ran"
                );
            }
            other => panic!("{other:?}"),
        }

        let third = at("2026-11-26T16:55:00Z");
        let (action, change) = take(&c, &mut lead, &mut turns, third).unwrap();
        assert_eq!(action, SlaAction::Reassign);
        assert_eq!(names(&change), ["LeadReassigned", "LeadRouted"]);
        assert_eq!(
            change.timeline[1].reason.as_deref(),
            Some("SLA step 2 (reassign) took the lead from anna")
        );
        let new = lead.assignment.as_ref().unwrap();
        assert_eq!(new.assignee_id(), "ben", "the next owner, never anna again");
        assert_eq!(new.sla.as_ref().unwrap().steps_taken, 0, "a new ladder");
        assert!(new.sla_deadline > third);
        let old = &lead.assignment_history[0];
        let outcome = old.outcome.as_ref().unwrap();
        assert_eq!(outcome.end, AssignmentEnd::Reassigned);
        assert_eq!(outcome.waited_seconds, (third - routed).num_seconds());
        // Working time: 5 min Friday + Mon, Tue, Wed (10 h each) + Thursday until 17:55.
        assert_eq!(
            outcome.waited_working_seconds,
            (5 + 30 * 60 + 9 * 60 + 55) * 60
        );
        assert_eq!(old.sla.as_ref().unwrap().steps.len(), 3);
        assert_eq!(lead.passed_over(), BTreeSet::from(["anna".to_owned()]));
    }

    #[test]
    fn a_step_is_taken_once_and_acceptance_stops_the_ladder() {
        let c = config();
        let routing = c.routing.as_ref().unwrap();
        let mut turns = 0;
        let mut lead = mql("DE", Temperature::Warm);
        let routed = at("2026-11-23T09:00:00Z");
        let a = route(&c, &mut lead, &mut turns, &[], routed).unwrap();
        lead.assign(a, routed);
        let deadline = lead.assignment.as_ref().unwrap().sla_deadline;
        let Due::Step {
            step,
            action,
            due: d,
        } = due(&lead, &c.sla, deadline, |_| false)
        else {
            panic!("due");
        };
        let mut copy = lead.clone();
        lead.take_sla_step(step, action, d, deadline, &c.sla, routing, None)
            .unwrap();
        assert_eq!(
            lead.take_sla_step(step, action, d, deadline, &c.sla, routing, None),
            Err(StepError::NotAtStep(step)),
            "a second tick at the same time sends nothing"
        );
        // Accepted before the step: never reminded.
        copy.assignment
            .as_mut()
            .unwrap()
            .accept(deadline - chrono::Duration::hours(1));
        assert_eq!(due(&copy, &c.sla, deadline, |_| false), Due::Nothing);
        copy.stage = Stage::Sal;
        copy.assignment
            .as_mut()
            .unwrap()
            .sla
            .as_mut()
            .unwrap()
            .next_due = Some(deadline);
        assert_eq!(
            due(&copy, &c.sla, deadline, |_| false),
            Due::Stop,
            "past MQL counts as accepted"
        );
        assert!(copy
            .take_sla_step(step, action, d, deadline, &c.sla, routing, None)
            .is_err());
    }

    #[test]
    fn hot_leads_climb_the_hot_ladder_into_the_managers_queue() {
        let c = config();
        let mut turns = 0;
        let mut lead = mql("DE", Temperature::Hot);
        let routed = at("2026-11-23T09:00:00Z");
        let a = route(&c, &mut lead, &mut turns, &[], routed).unwrap();
        assert!(a.sla.as_ref().unwrap().hot);
        assert_eq!(a.sla_deadline, at("2026-11-23T09:15:00Z"));
        lead.assign(a, routed);
        let (action, _) = take(&c, &mut lead, &mut turns, at("2026-11-23T09:15:00Z")).unwrap();
        assert_eq!(action, SlaAction::RemindOwner);
        let (action, change) = take(&c, &mut lead, &mut turns, at("2026-11-23T10:00:00Z")).unwrap();
        assert_eq!(action, SlaAction::EscalateToManager);
        assert!(
            matches!(&change.events[0], LeadEvent::SlaEscalated { manager, .. } if manager.id == "maria")
        );
        let (action, change) = take(&c, &mut lead, &mut turns, at("2026-11-23T11:00:00Z")).unwrap();
        assert_eq!(action, SlaAction::ReturnToQueue);
        assert_eq!(names(&change), ["LeadReassigned", "LeadRouted"]);
        let queued = lead.assignment.as_ref().unwrap();
        assert!(
            matches!(&queued.assigned_to, AssignedTo::ManagerQueue { id, .. } if id == "maria")
        );
        assert!(queued.sla.is_none(), "the manager assigns by hand");
        assert_eq!(
            lead.assignment_history[0].outcome.as_ref().unwrap().end,
            AssignmentEnd::ReturnedToQueue
        );
    }

    #[test]
    fn an_away_owners_due_lead_is_reassigned_at_once() {
        let c = config();
        let mut turns = 0;
        let mut lead = mql("DE", Temperature::Warm);
        let routed = at("2026-11-23T09:00:00Z");
        let a = route(&c, &mut lead, &mut turns, &[], routed).unwrap();
        let deadline = a.sla_deadline;
        lead.assign(a, routed);
        match due(&lead, &c.sla, deadline, |id| id == "anna") {
            Due::Step {
                step: 0, action, ..
            } => assert_eq!(action, SlaAction::Reassign),
            other => panic!("{other:?}"),
        }
        match due(&lead, &c.sla, deadline, |id| id == "ben") {
            Due::Step {
                step: 0, action, ..
            } => assert_eq!(action, SlaAction::RemindOwner),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partner_offers_expire_to_the_next_partner_then_the_managers_queue() {
        let c = config();
        let mut turns = 0;
        let mut lead = mql("AT", Temperature::Warm);
        let routed = at("2026-11-23T09:00:00Z");
        let a = route(&c, &mut lead, &mut turns, &[], routed).unwrap();
        assert_eq!(a.assignee_id(), "p1");
        assert!(a.is_open_offer());
        assert_eq!(
            a.sla_deadline,
            at("2026-11-23T13:00:00Z"),
            "4 working hours"
        );
        lead.assign(a, routed);
        let (action, change) = take(&c, &mut lead, &mut turns, at("2026-11-23T13:00:00Z")).unwrap();
        assert_eq!(action, SlaAction::ExpireOffer);
        assert_eq!(names(&change), ["PartnerOfferExpired", "LeadRouted"]);
        assert_eq!(lead.assignment.as_ref().unwrap().assignee_id(), "p2");
        // p2 declines (the CRM callback marks it; the next tick moves on).
        let now = at("2026-11-23T14:00:00Z");
        let a = lead.assignment.as_mut().unwrap();
        a.outcome = Some(c.sla.outcome(a, AssignmentEnd::Declined, now));
        a.sla.as_mut().unwrap().next_due = Some(now);
        let (action, _) = take(&c, &mut lead, &mut turns, now).unwrap();
        assert_eq!(action, SlaAction::ExpireOffer);
        let queued = lead.assignment.as_ref().unwrap();
        assert!(
            matches!(&queued.assigned_to, AssignedTo::ManagerQueue { id, .. } if id == "maria"),
            "{queued:?}"
        );
        assert_eq!(
            lead.passed_over(),
            BTreeSet::from(["p1".to_owned(), "p2".to_owned()]),
            "never offered again"
        );
        let ends: Vec<_> = lead
            .assignment_history
            .iter()
            .map(|a| a.outcome.as_ref().unwrap().end)
            .collect();
        assert_eq!(ends, [AssignmentEnd::OfferExpired, AssignmentEnd::Declined]);
    }

    #[test]
    fn nobody_left_keeps_the_lead_and_says_so() {
        let c = config();
        let routing = c.routing.as_ref().unwrap();
        let mut turns = 0;
        let mut lead = mql("DE", Temperature::Warm);
        let routed = at("2026-11-23T09:00:00Z");
        let a = route(&c, &mut lead, &mut turns, &[], routed).unwrap();
        lead.assign(a.clone(), routed);
        let track = a.sla.unwrap();
        let change = lead
            .take_sla_step(
                track.steps_taken,
                SlaAction::Reassign,
                track.next_due.unwrap(),
                routed,
                &c.sla,
                routing,
                None,
            )
            .unwrap();
        assert_eq!(change.timeline[0].action, TimelineAction::SlaExhausted);
        assert!(change.events.is_empty());
        assert_eq!(lead.assignment.as_ref().unwrap().assignee_id(), "anna");
        assert_eq!(
            due(&lead, &c.sla, routed + chrono::Duration::days(30), |_| {
                false
            }),
            Due::Nothing
        );
    }

    #[test]
    fn ladders_that_make_no_sense_are_refused_with_the_step() {
        let bad = |ladder: &str| {
            let yaml = config_yaml().replace(
                "        - { after: 2d, action: remind_owner }\n        - { after: 1d, action: remind_with_manager }\n        - { after: 1d, action: reassign }\n",
                ladder,
            );
            LeadflowConfig::parse(&yaml).unwrap_err().to_string()
        };
        let e = bad("        - { after: 1d, action: reassign }\n        - { after: 1d, action: remind_owner }\n");
        assert!(
            e.contains("ladder[0]") && e.contains("starts with a reminder"),
            "{e}"
        );
        let e = bad("        - { after: 0m, action: remind_owner }\n");
        assert!(
            e.contains("ladder[0].after must be more than nothing"),
            "{e}"
        );
        let e = bad("        - { after: 1d, action: remind_owner }\n        - { after: 1d, action: reassign }\n        - { after: 1d, action: remind_owner }\n");
        assert!(
            e.contains("ladder[2]") && e.contains("takes the lead away"),
            "{e}"
        );
        let e = bad("        - { after: 1d, action: escalate_to_manager }\n");
        assert!(e.contains("starts with a reminder"), "{e}");
        let e = bad("        - { after: 1d, action: remind_owner }\n        - { after: 1d, action: escalate_to_manager }\n        - { after: 1d, action: remind_owner }\n");
        assert!(
            e.contains("ladder[2]: remind_owner cannot come after escalate_to_manager"),
            "{e}"
        );
        let e = bad("        - { after: soon, action: remind_owner }\n");
        assert!(e.contains("not a duration"), "{e}");
        let e =
            LeadflowConfig::parse(&config_yaml().replace("pools: [resellers]", "pools: [nowhere]"))
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("sla.teams.partners.pools") && e.contains("nowhere"),
            "{e}"
        );
        let e = LeadflowConfig::parse(
            &config_yaml().replace("time_zone: Europe/Berlin", "time_zone: Berlin"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("calendars.berlin") && e.contains("IANA"), "{e}");
    }

    fn config_yaml() -> String {
        YAML.replace(
            "scoring:\n  thresholds: { engaged: 20, mql: 60 }\n",
            crate::scoring::EXAMPLE_YAML,
        )
    }

    #[test]
    fn without_a_team_the_pool_keeps_its_raw_deadline_and_no_ladder() {
        let yaml = config_yaml();
        let without_sla = &yaml[..yaml.find("sla:\n").unwrap()];
        let c = LeadflowConfig::parse(without_sla).unwrap();
        let mut lead = mql("DE", Temperature::Warm);
        let routed = at("2026-11-20T16:55:00Z");
        let a = route(&c, &mut lead, &mut 0, &[], routed).unwrap();
        assert_eq!(a.sla_deadline, routed + chrono::Duration::hours(24));
        assert!(a.sla.is_none());
        lead.assign(a, routed);
        assert_eq!(
            due(&lead, &c.sla, routed + chrono::Duration::days(9), |_| false),
            Due::Nothing
        );
    }
}
