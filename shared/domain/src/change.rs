//! The one shape of a decision about a lead: the lead as it should be stored, the timeline
//! entries that say what happened, and the events to announce. Every change of a lead is
//! decided by a pure function of the domain returning these, and stored by one update path
//! (`leadflow_lambda::lead_update`) that writes them in one transaction.

use crate::events::LeadEvent;
use crate::lead::Lead;
use crate::timeline::TimelineEntry;

/// What a change records besides the lead itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub timeline: Vec<TimelineEntry>,
    /// Announced on the bus once stored (kept in the outbox until then).
    pub events: Vec<LeadEvent>,
}

impl Change {
    /// A change recorded by one timeline entry.
    pub fn entry(entry: TimelineEntry) -> Self {
        Self {
            timeline: vec![entry],
            events: Vec::new(),
        }
    }

    pub fn with_event(mut self, event: LeadEvent) -> Self {
        self.events.push(event);
        self
    }
}

/// What a decision asks the store to do with the lead it was given.
// Returned once per attempt and consumed at once: boxing the lead would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<T> {
    /// Nothing to store; `T` is the answer.
    Keep(T),
    /// Store `lead` (a new one, or the one read, changed) with `change`; `T` is the answer.
    Store {
        lead: Lead,
        change: Change,
        outcome: T,
    },
}

impl<T> Decision<T> {
    pub fn store(lead: Lead, change: Change, outcome: T) -> Self {
        Decision::Store {
            lead,
            change,
            outcome,
        }
    }
}
