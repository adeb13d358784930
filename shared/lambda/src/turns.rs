//! Taking a pool's round-robin turn: the I/O half of routing (the counters are shared state),
//! for route and for the SLA ladder's reassignments alike.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use leadflow_domain::assignment::AssignedTo;
use leadflow_domain::ports::{Availability, RoutingState, StoreError};
use leadflow_domain::routing::{Owner, RoutingFacts, RoutingPlan};

use crate::lead_update::{UpdateError, Updated};

/// Whose turn it is in the plan's pool: the next member of its turn order who may take the
/// lead (present, covering it, not passed over) and is under their daily cap (whose slot is
/// then taken). `None` when nobody is, after twice round.
pub async fn take_turn<'c, S: RoutingState>(
    store: &S,
    plan: &RoutingPlan<'c>,
    facts: &RoutingFacts<'_>,
    now: DateTime<Utc>,
) -> Result<Option<&'c Owner>, StoreError> {
    let day = now.date_naive();
    for _ in 0..plan.turns_to_try() {
        let turn = store.next_turn(&plan.pool.id).await?;
        let Some(owner) = plan.candidate(turn, facts, day) else {
            continue;
        };
        if let Some(cap) = owner.daily_cap {
            if !store.take_daily_slot(&owner.id, day, cap).await? {
                continue;
            }
        }
        return Ok(Some(owner));
    }
    Ok(None)
}

/// Gives back the daily slot taken for `picked` when the lead went to someone else.
pub async fn release_unused<S: RoutingState>(
    store: &S,
    picked: Option<&Owner>,
    got_it: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match picked.filter(|o| o.daily_cap.is_some() && o.id != got_it) {
        Some(owner) => store.release_daily_slot(&owner.id, now.date_naive()).await,
        None => Ok(()),
    }
}

/// After the lead write that `picked`'s daily slot was taken for: the slot is given back
/// unless the stored lead went to `picked`: the write failed (an outage, a contended lead),
/// decided nothing (the lead was routed meanwhile, or waits), or gave the lead to someone
/// else. A failed give-back is tried again before it is reported.
pub async fn settle_turn<S: RoutingState, T, E>(
    store: &S,
    picked: Option<&Owner>,
    written: &Result<Updated<T>, UpdateError<E>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let got_it = written
        .as_ref()
        .ok()
        .and_then(|u| u.stored.as_ref())
        .and_then(|l| l.assignment.as_ref())
        .filter(|a| matches!(a.assigned_to, AssignedTo::Owner { .. }))
        .map_or("", |a| a.assignee_id());
    let mut result = Ok(());
    for _ in 0..3 {
        result = release_unused(store, picked, got_it, now).await;
        if result.is_ok() {
            break;
        }
    }
    result
}

/// The owners away on `now`'s day through the API (the configuration's absences are the
/// routing config's own).
pub async fn away_today<S: Availability>(
    store: &S,
    now: DateTime<Utc>,
) -> Result<BTreeSet<String>, StoreError> {
    let day = now.date_naive();
    Ok(store
        .absences()
        .await?
        .into_iter()
        .filter(|a| a.from <= day && day <= a.to)
        .map(|a| a.owner)
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use chrono::NaiveDate;
    use leadflow_domain::assignment::Assignment;
    use leadflow_domain::lead::SubmissionContext;
    use leadflow_domain::{Lead, LeadId, SubmissionRules};

    use super::*;

    /// Daily counters in memory; `failing` give-backs fail first.
    #[derive(Default)]
    struct Slots {
        taken: Mutex<BTreeMap<(String, NaiveDate), u32>>,
        failing: Mutex<usize>,
    }

    impl RoutingState for Slots {
        async fn next_turn(&self, _pool: &str) -> Result<u64, StoreError> {
            Ok(1)
        }
        async fn take_daily_slot(
            &self,
            owner: &str,
            day: NaiveDate,
            cap: u32,
        ) -> Result<bool, StoreError> {
            let mut taken = self.taken.lock().unwrap();
            let n = taken.entry((owner.to_owned(), day)).or_default();
            Ok(*n < cap && {
                *n += 1;
                true
            })
        }
        async fn release_daily_slot(&self, owner: &str, day: NaiveDate) -> Result<(), StoreError> {
            let mut failing = self.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(StoreError::unavailable("throttled"));
            }
            let mut taken = self.taken.lock().unwrap();
            let n = taken.entry((owner.to_owned(), day)).or_default();
            *n = n.saturating_sub(1);
            Ok(())
        }
    }

    impl Slots {
        fn count(&self, owner: &str, day: NaiveDate) -> u32 {
            self.taken
                .lock()
                .unwrap()
                .get(&(owner.to_owned(), day))
                .copied()
                .unwrap_or_default()
        }
    }

    fn owner(id: &str) -> Owner {
        leadflow_domain::config::parse_yaml(&format!(
            "{{ id: {id}, name: N, email: {id}@example.com, daily_cap: 5 }}"
        ))
        .unwrap()
    }

    fn lead_assigned_to(id: &str, now: DateTime<Utc>) -> Lead {
        let raw = [("email".to_owned(), "a@example.com".to_owned())].into();
        let mut lead = Lead::capture(
            LeadId::new_at(now),
            SubmissionRules::default().validate(&raw).unwrap(),
            &SubmissionContext::default(),
            now,
        )
        .lead;
        lead.assignment = Some(Assignment {
            assigned_to: AssignedTo::Owner {
                id: id.into(),
                name: "N".into(),
                email: format!("{id}@example.com"),
            },
            pool: "p".into(),
            rule: None,
            fast_track: false,
            config_version: 1,
            at: now,
            sla_deadline: now,
            accepted_at: None,
            sla: None,
            delivered_at: None,
            outcome: None,
        });
        lead
    }

    type Written = Result<Updated<()>, UpdateError<()>>;

    fn stored(lead: Option<Lead>) -> Written {
        Ok(Updated {
            outcome: (),
            stored: lead,
            events: Vec::new(),
        })
    }

    /// The slot taken before a lead write is given back on every outcome but one: the lead
    /// stored with the picked owner.
    #[tokio::test]
    async fn a_slot_taken_for_a_write_that_failed_is_given_back() {
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let day = now.date_naive();
        let anna = owner("anna");
        let cases: Vec<(&str, Written, u32)> = vec![
            (
                "the write failed",
                Err(UpdateError::Store(StoreError::unavailable("down"))),
                0,
            ),
            ("the lead stayed busy", Err(UpdateError::Contended), 0),
            ("the decision refused it", Err(UpdateError::Rejected(())), 0),
            (
                "nothing was stored (routed meanwhile, or waits)",
                stored(None),
                0,
            ),
            (
                "someone else got the lead",
                stored(Some(lead_assigned_to("ben", now))),
                0,
            ),
            (
                "anna got the lead",
                stored(Some(lead_assigned_to("anna", now))),
                1,
            ),
        ];
        for (case, written, kept) in cases {
            let slots = Slots::default();
            assert!(slots.take_daily_slot("anna", day, 5).await.unwrap());
            settle_turn(&slots, Some(&anna), &written, now)
                .await
                .unwrap();
            assert_eq!(slots.count("anna", day), kept, "{case}");
        }
        // A give-back that fails once is tried again.
        let slots = Slots::default();
        assert!(slots.take_daily_slot("anna", day, 5).await.unwrap());
        *slots.failing.lock().unwrap() = 1;
        let failed: Written = Err(UpdateError::Contended);
        settle_turn(&slots, Some(&anna), &failed, now)
            .await
            .unwrap();
        assert_eq!(slots.count("anna", day), 0);
        // An owner without a cap took no slot: nothing to give back.
        let slots = Slots::default();
        let uncapped = Owner {
            daily_cap: None,
            ..owner("cem")
        };
        settle_turn(&slots, Some(&uncapped), &failed, now)
            .await
            .unwrap();
        assert!(slots.taken.lock().unwrap().is_empty());
    }
}
