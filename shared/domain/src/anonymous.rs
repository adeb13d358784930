//! Anonymous history: the events of someone who is not a lead yet, parked under a key (visitor
//! id or e-mail) until a lead claims them, bounded so that no key grows without limit and a join
//! has a known worst case (docs/data-model.md, Anonymous history).

use chrono::{DateTime, Duration, Utc};

use crate::lead::Lead;
use crate::tracking::{TrackedEvent, MAX_EVENT_AGE};

/// The most events kept per key. When a key is full, the event parked longest ago makes room
/// for the new one (a ring of slots), rather than new events being refused: scoring weighs
/// recent behaviour most (decay, temperature), and the visit right before a sign-up matters
/// more than a burst months earlier; refusing new events would let an early burst (or a bot)
/// lock out exactly those. 500 is also what the scoring engine keeps of a lead
/// (`scoring::engine::MAX_KEPT_EVENTS`), so a full history is about one scoring state's worth.
pub const MAX_EVENTS: u64 = 500;

/// How long a parked event is kept after it occurred: as old as `POST /events` accepts and the
/// scoring horizon reaches. The store's TTL removes it then; a join skips it until the TTL has.
pub const MAX_AGE: Duration = MAX_EVENT_AGE;

/// Events a join reads and scores at a time; its progress is saved after each page.
pub const JOIN_PAGE: usize = 25;

/// The slot (0 to [`MAX_EVENTS`] − 1) the `parked`-th event of a key (counting from 1) takes:
/// slot numbers go round, so the next event after a full ring replaces the oldest parked.
pub fn slot(parked: u64) -> u64 {
    parked.saturating_sub(1) % MAX_EVENTS
}

/// When a parked event expires.
pub fn expires_at(event: &TrackedEvent) -> DateTime<Utc> {
    event.occurred_at + MAX_AGE
}

/// Whether a parked event is past [`MAX_AGE`] at `now` (not joined even if still stored).
pub fn is_expired(event: &TrackedEvent, now: DateTime<Utc>) -> bool {
    expires_at(event) < now
}

/// The keys a lead's anonymous history may be parked under (the format of
/// `Identity::anonymous_key`): its visitor id, then its e-mail.
pub fn keys_of(lead: &Lead) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(v) = &lead.visitor_id {
        keys.push(format!("visitor:{v}"));
    }
    keys.push(format!("email:{}", lead.email));
    keys
}

/// One page of a key's history, in store order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryPage {
    pub events: Vec<TrackedEvent>,
    /// Stored items that could not be read: skipped (one damaged item must not block the join).
    pub unreadable: usize,
    /// Where the next page starts (the position of the last item read), if any item was read.
    pub cursor: Option<String>,
    /// Whether items may follow the cursor.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::Identity;

    fn event(occurred_at: &str) -> TrackedEvent {
        TrackedEvent {
            event_id: "e-1".into(),
            event_type: "page_view".into(),
            occurred_at: occurred_at.parse().unwrap(),
            url: None,
            tags: vec![],
            properties: Default::default(),
            identity: Identity {
                lead_id: None,
                email: None,
                visitor_id: Some("v".into()),
            },
        }
    }

    #[test]
    fn slots_go_round_so_the_oldest_parked_makes_room() {
        assert_eq!(slot(1), 0);
        assert_eq!(slot(MAX_EVENTS), MAX_EVENTS - 1);
        // The 501st event replaces the first.
        assert_eq!(slot(MAX_EVENTS + 1), 0);
        assert_eq!(slot(10_000), (10_000 - 1) % MAX_EVENTS);
        let distinct: std::collections::BTreeSet<u64> = (1..=10_000).map(slot).collect();
        assert_eq!(distinct.len() as u64, MAX_EVENTS);
    }

    #[test]
    fn events_expire_after_the_maximum_age() {
        let e = event("2026-09-01T00:00:00Z");
        assert_eq!(
            expires_at(&e),
            "2026-11-30T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(!is_expired(&e, "2026-11-29T23:59:59Z".parse().unwrap()));
        assert!(is_expired(&e, "2026-11-30T00:00:01Z".parse().unwrap()));
    }
}
