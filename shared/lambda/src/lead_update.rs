//! The one way to change a lead: read it, let a pure decision of the domain change it
//! ([`Decision`]), write it under the version read together with its timeline entries and
//! outbox events (one transaction), and decide afresh when a concurrent writer won the race,
//! within a bounded budget. The events are then the caller's to publish
//! ([`crate::outbox::deliver`]); the outbox relay publishes what a caller could not.
//!
//! The same optimistic loop serves any record written under a version ([`Attempt`],
//! [`until_settled`]): score-event uses it for the lead's score.

use std::future::Future;

use chrono::{DateTime, Utc};
use leadflow_domain::change::Decision;
use leadflow_domain::ports::{LeadStore, LeadWrite, StoreError};
use leadflow_domain::{Email, EventEnvelope, Lead, LeadId};

use crate::retry::lost_race;

/// How often a change is decided and tried before it gives up on a busy lead. Each lost race
/// has one winner, so this bounds how long one change waits behind a burst of others.
pub const MAX_ATTEMPTS: usize = 30;

/// Why a lead was not changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error("no such lead")]
    NotFound,
    /// The decision refused the change (an invalid move, an invalid field): an answer.
    #[error("the change was refused")]
    Rejected(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every attempt lost a race to a concurrent writer: worth trying again later.
    #[error("the record kept changing concurrently; gave up after {MAX_ATTEMPTS} attempts")]
    Contended,
}

/// A decided change and what became of it.
#[derive(Debug)]
pub struct Updated<T> {
    pub outcome: T,
    /// The lead as stored, when the decision stored it.
    pub stored: Option<Lead>,
    /// The events written to the outbox with it, to publish now.
    pub events: Vec<EventEnvelope>,
}

/// One optimistic attempt at a record written under a version: read, decide, write.
pub trait Attempt: Send {
    type Output;
    type Error;
    fn attempt(
        &mut self,
    ) -> impl Future<Output = Result<Self::Output, UpdateError<Self::Error>>> + Send;
}

/// Makes attempts until one does not lose a race (a store conflict), at most [`MAX_ATTEMPTS`],
/// with a short random pause between them so the losers do not collide again.
pub async fn until_settled<A: Attempt>(a: &mut A) -> Result<A::Output, UpdateError<A::Error>> {
    for attempt in 1..=MAX_ATTEMPTS {
        match a.attempt().await {
            Err(UpdateError::Store(e)) if e.is_conflict() => {
                if attempt < MAX_ATTEMPTS {
                    lost_race().await;
                }
            }
            settled => return settled,
        }
    }
    Err(UpdateError::Contended)
}

/// How the lead is found.
enum Find<'a> {
    Id(LeadId),
    Email(&'a Email),
}

struct LeadAttempt<'a, S, D> {
    store: &'a S,
    find: Find<'a>,
    /// A lead the caller read already: the first attempt decides on it.
    first: Option<Lead>,
    decide: D,
    now: DateTime<Utc>,
}

impl<S, D, T, E> Attempt for LeadAttempt<'_, S, D>
where
    S: LeadStore,
    D: FnMut(Option<Lead>) -> Result<Decision<T>, E> + Send,
    T: Send,
    E: Send,
{
    type Output = Updated<T>;
    type Error = E;

    async fn attempt(&mut self) -> Result<Updated<T>, UpdateError<E>> {
        let read = match (self.first.take(), &self.find) {
            (Some(lead), _) => Some(lead),
            (None, Find::Id(id)) => self.store.get(*id).await?,
            (None, Find::Email(email)) => self.store.find_by_email(email).await?,
        };
        let expected = read.as_ref().map(|l| l.version);
        match (self.decide)(read).map_err(UpdateError::Rejected)? {
            Decision::Keep(outcome) => Ok(Updated {
                outcome,
                stored: None,
                events: Vec::new(),
            }),
            Decision::Store {
                mut lead,
                change,
                outcome,
            } => {
                lead.version = expected.map_or(1, |v| v + 1);
                let events = change
                    .events
                    .into_iter()
                    .map(|e| EventEnvelope::new(lead.id, self.now, e))
                    .collect();
                let write = LeadWrite {
                    lead,
                    expected_version: expected,
                    timeline: change.timeline,
                    events,
                };
                self.store.write(&write).await?;
                Ok(Updated {
                    outcome,
                    stored: Some(write.lead),
                    events: write.events,
                })
            }
        }
    }
}

async fn run<S, T, E>(
    store: &S,
    find: Find<'_>,
    first: Option<Lead>,
    now: DateTime<Utc>,
    decide: impl FnMut(Option<Lead>) -> Result<Decision<T>, E> + Send,
) -> Result<Updated<T>, UpdateError<E>>
where
    S: LeadStore,
    T: Send,
    E: Send,
{
    until_settled(&mut LeadAttempt {
        store,
        find,
        first,
        decide,
        now,
    })
    .await
}

/// Changes lead `id` as `decide` says (`NotFound` when there is no such lead).
pub async fn update<S, T, E>(
    store: &S,
    id: LeadId,
    now: DateTime<Utc>,
    decide: impl FnMut(Lead) -> Result<Decision<T>, E> + Send,
) -> Result<Updated<T>, UpdateError<E>>
where
    S: LeadStore,
    T: Send,
    E: Send,
{
    by_id(store, id, None, now, decide).await
}

/// Like [`update`], deciding first on `lead`, which the caller has read already (and read
/// other state for); a lost race reads it again.
pub async fn update_read<S, T, E>(
    store: &S,
    lead: Lead,
    now: DateTime<Utc>,
    decide: impl FnMut(Lead) -> Result<Decision<T>, E> + Send,
) -> Result<Updated<T>, UpdateError<E>>
where
    S: LeadStore,
    T: Send,
    E: Send,
{
    by_id(store, lead.id, Some(lead), now, decide).await
}

async fn by_id<S, T, E>(
    store: &S,
    id: LeadId,
    first: Option<Lead>,
    now: DateTime<Utc>,
    mut decide: impl FnMut(Lead) -> Result<Decision<T>, E> + Send,
) -> Result<Updated<T>, UpdateError<E>>
where
    S: LeadStore,
    T: Send,
    E: Send,
{
    // A missing lead is refused with `None`, told apart from the decision's own refusals.
    let found = |lead: Option<Lead>| match lead {
        Some(lead) => decide(lead).map_err(Some),
        None => Err(None),
    };
    match run(store, Find::Id(id), first, now, found).await {
        Ok(updated) => Ok(updated),
        Err(UpdateError::Rejected(Some(e))) => Err(UpdateError::Rejected(e)),
        Err(UpdateError::Rejected(None) | UpdateError::NotFound) => Err(UpdateError::NotFound),
        Err(UpdateError::Store(e)) => Err(UpdateError::Store(e)),
        Err(UpdateError::Contended) => Err(UpdateError::Contended),
    }
}

/// Creates the lead with this e-mail or changes the one that has it: `decide` is given the
/// lead the e-mail names, if any. Of concurrent creations one wins; the others decide again
/// on the lead it created.
pub async fn upsert_by_email<S, T, E>(
    store: &S,
    email: &Email,
    now: DateTime<Utc>,
    decide: impl FnMut(Option<Lead>) -> Result<Decision<T>, E> + Send,
) -> Result<Updated<T>, UpdateError<E>>
where
    S: LeadStore,
    T: Send,
    E: Send,
{
    run(store, Find::Email(email), None, now, decide).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use leadflow_domain::capture::Captured;
    use leadflow_domain::lead::SubmissionContext;
    use leadflow_domain::ports::LeadWrite;
    use leadflow_domain::{Change, LeadEvent, SubmissionRules, TimelineEntry};

    use super::*;

    /// Leads in memory, written under their version like the DynamoDB store; `conflicts`
    /// writes fail first as if a concurrent writer had won.
    #[derive(Default)]
    struct Memory {
        leads: Mutex<Vec<Lead>>,
        conflicts: Mutex<usize>,
        writes: Mutex<Vec<LeadWrite>>,
    }

    impl LeadStore for Memory {
        async fn get(&self, id: LeadId) -> Result<Option<Lead>, StoreError> {
            Ok(self
                .leads
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.id == id)
                .cloned())
        }
        async fn find_by_email(&self, email: &Email) -> Result<Option<Lead>, StoreError> {
            Ok(self
                .leads
                .lock()
                .unwrap()
                .iter()
                .find(|l| &l.email == email)
                .cloned())
        }
        async fn write(&self, change: &LeadWrite) -> Result<(), StoreError> {
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                return Err(match change.expected_version {
                    Some(expected) => StoreError::VersionConflict { expected },
                    None => StoreError::EmailTaken,
                });
            }
            let mut leads = self.leads.lock().unwrap();
            let current = leads.iter().position(|l| l.id == change.lead.id);
            match (change.expected_version, current) {
                (None, None) => leads.push(change.lead.clone()),
                (Some(v), Some(i)) if leads[i].version == v => leads[i] = change.lead.clone(),
                (Some(expected), _) => return Err(StoreError::VersionConflict { expected }),
                (None, Some(_)) => return Err(StoreError::EmailTaken),
            }
            self.writes.lock().unwrap().push(change.clone());
            Ok(())
        }
        async fn timeline(&self, _: LeadId) -> Result<Vec<TimelineEntry>, StoreError> {
            Ok(vec![])
        }
        async fn append_timeline(&self, _: LeadId, _: &[TimelineEntry]) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn captured(email: &str) -> Captured {
        let raw = vec![("email".to_owned(), email.to_owned())];
        let s = SubmissionRules::default().validate(&raw).unwrap();
        Lead::capture(
            LeadId::new_at(now()),
            s,
            &SubmissionContext::default(),
            now(),
        )
    }

    fn store_with(email: &str) -> (Memory, Lead) {
        let store = Memory::default();
        let lead = captured(email).lead;
        store.leads.lock().unwrap().push(lead.clone());
        (store, lead)
    }

    fn rename(mut lead: Lead, name: &str) -> Decision<usize> {
        lead.first_name = Some(name.into());
        let event = LeadEvent::StageChanged {
            from: lead.stage,
            to: lead.stage,
            actor: leadflow_domain::Actor::System,
            reason: None,
        };
        Decision::store(lead, Change::default().with_event(event), 7)
    }

    #[tokio::test]
    async fn a_decision_is_written_under_the_version_read_with_its_events() {
        let (store, lead) = store_with("a@example.com");
        let updated = update(&store, lead.id, now(), |l| Ok::<_, ()>(rename(l, "Ada")))
            .await
            .unwrap();
        assert_eq!(updated.outcome, 7);
        assert_eq!(updated.stored.as_ref().unwrap().version, 2);
        assert_eq!(updated.events.len(), 1);
        assert_eq!(updated.events[0].lead_id, lead.id);
        assert_eq!(updated.events[0].occurred_at, now());
        let writes = store.writes.lock().unwrap();
        assert_eq!(writes[0].expected_version, Some(1));
        assert_eq!(
            writes[0].events, updated.events,
            "the events go to the outbox with it"
        );
    }

    #[tokio::test]
    async fn a_lost_race_is_decided_again_on_the_lead_read_afresh() {
        let (store, lead) = store_with("a@example.com");
        *store.conflicts.lock().unwrap() = 2;
        let mut decisions = 0;
        let updated = update_read(&store, lead.clone(), now(), |l| {
            decisions += 1;
            Ok::<_, ()>(rename(l, "Ada"))
        })
        .await
        .unwrap();
        assert_eq!(decisions, 3);
        assert_eq!(updated.stored.unwrap().first_name.as_deref(), Some("Ada"));
    }

    #[tokio::test]
    async fn keep_writes_nothing_and_refusals_and_missing_leads_are_told_apart() {
        let (store, lead) = store_with("a@example.com");
        let kept = update(&store, lead.id, now(), |l| {
            Ok::<_, ()>(Decision::Keep(l.version))
        })
        .await
        .unwrap();
        assert_eq!((kept.outcome, kept.stored.is_none()), (1, true));
        assert!(store.writes.lock().unwrap().is_empty());
        let refused = update(&store, lead.id, now(), |_| Err::<Decision<()>, _>("no"));
        assert!(matches!(refused.await, Err(UpdateError::Rejected("no"))));
        let other = LeadId::new_at(now());
        let missing = update(&store, other, now(), |l| Ok::<_, ()>(rename(l, "x")));
        assert!(matches!(missing.await, Err(UpdateError::NotFound)));
    }

    #[tokio::test]
    async fn a_busy_lead_gives_up_after_the_budget() {
        let (store, lead) = store_with("a@example.com");
        *store.conflicts.lock().unwrap() = MAX_ATTEMPTS;
        let mut decisions = 0;
        let result = update(&store, lead.id, now(), |l| {
            decisions += 1;
            Ok::<_, ()>(rename(l, "Ada"))
        })
        .await;
        assert!(matches!(result, Err(UpdateError::Contended)));
        assert_eq!(decisions, MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_creation_that_lost_to_another_decides_again_on_the_winner() {
        let store = Memory::default();
        let email = Email::parse("new@example.com").unwrap();
        *store.conflicts.lock().unwrap() = 1;
        let mut seen = Vec::new();
        let updated = upsert_by_email(&store, &email, now(), |found| {
            seen.push(found.as_ref().map(|l| l.version));
            Ok::<_, ()>(match found {
                None => {
                    let c = captured("new@example.com");
                    Decision::store(c.lead, c.change, "created")
                }
                Some(_) => Decision::Keep("known"),
            })
        })
        .await
        .unwrap();
        assert_eq!(seen, [None, None], "the emulated winner wrote nothing here");
        assert_eq!(updated.outcome, "created");
        assert_eq!(updated.stored.unwrap().version, 1);
        let again = upsert_by_email(&store, &email, now(), |found| {
            Ok::<_, ()>(match found {
                Some(l) => Decision::Keep(l.version),
                None => Decision::Keep(0),
            })
        })
        .await
        .unwrap();
        assert_eq!(again.outcome, 1);
    }
}
