//! Taking a pool's round-robin turn: the I/O half of routing (the counters are shared state),
//! for route and for the SLA ladder's reassignments alike.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use leadflow_domain::ports::{Availability, RoutingState, StoreError};
use leadflow_domain::routing::{Owner, RoutingFacts, RoutingPlan};

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
