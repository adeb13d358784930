//! What scoring keeps per lead: the engine's state, the last snapshot shown, the config
//! version that produced it, and what makes scoring a batch of events one write: the lead's
//! latest activities, the ids of the events applied lately (duplicates), and what its segment
//! members were last written with.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lead::LeadId;
use crate::scoring::{
    changed, ApplyStatus, FitProfile, HalfLife, ScoreSnapshot, ScoreState, ScoringModel,
};
use crate::tracking::{Identity, TrackedEvent};

/// How many of its latest activities (by `occurred_at`) a score record keeps: what the CRM
/// payload sends (`crm::ACTIVITIES_SENT`), and all anything reads.
pub const RECENT_ACTIVITIES: usize = 20;
/// How long the ids of applied events are kept: SQS keeps a message at most 14 days from its
/// first send (the queues' and DLQs' `MessageRetentionPeriod`, the most SQS allows), so no
/// redelivery of an event comes later than that after it was scored.
pub const REDELIVERY_WINDOW: Duration = Duration::days(14);
/// The most ids of applied events kept (the oldest go first): more than two retried
/// `POST /events` batches (100 events each) of one lead.
pub const MAX_RECENT_IDS: usize = 256;
/// A segment member is rewritten when the lead's interest in its tag has moved by more than
/// this factor (up or down) from the member's weight, decayed to now: a segment shows each
/// weight to within 25 %.
pub const SEGMENT_TOLERANCE: f64 = 1.25;
/// ... or when it was written this long ago, well before its TTL (a year) would remove it.
pub const SEGMENT_REFRESH: Duration = Duration::days(180);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadScore {
    pub lead_id: LeadId,
    pub state: ScoreState,
    /// The score as last announced, with its explanation ("why is this lead at 72?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<ScoreSnapshot>,
    /// The configuration version that produced `snapshot`.
    pub config_version: u64,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version of this record.
    pub version: u64,
    /// The latest activities by `occurred_at` (then event id), newest first, at most
    /// [`RECENT_ACTIVITIES`]; each event as scored (no properties, no identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activities: Vec<Activity>,
    /// The events applied lately, to recognise a redelivery.
    #[serde(default, skip_serializing_if = "RecentEvents::is_empty")]
    pub recent: RecentEvents,
    /// Per tag, what the lead's segment member was last written with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, MemberWeight>,
}

impl LeadScore {
    pub fn new(lead_id: LeadId, at: DateTime<Utc>) -> Self {
        Self {
            lead_id,
            state: ScoreState::default(),
            snapshot: None,
            config_version: 0,
            updated_at: at,
            version: 0,
            activities: Vec::new(),
            recent: RecentEvents::default(),
            segments: BTreeMap::new(),
        }
    }

    /// Scores a batch of the lead's events at `now`: each event not applied before is applied
    /// to the state, its id kept and its activity listed; then one snapshot is taken for the
    /// whole batch. The record is to be written only when [`BatchScored::changed`].
    ///
    /// An event counts as applied before when its id is among the recent ids (a redelivery
    /// within [`REDELIVERY_WINDOW`] and [`MAX_RECENT_IDS`]), or earlier in the batch, or when
    /// the engine still keeps it (same id and time: it counted for a rule or has tags). A
    /// redelivery that neither recognises changes no score (it counted for nothing) and adds no
    /// second activity (the list is kept unique by event id), so it leaves the record as it
    /// was and is not written.
    pub fn score_batch<'a>(
        &mut self,
        model: &ScoringModel,
        fit: &FitProfile,
        config_version: u64,
        events: impl IntoIterator<Item = &'a TrackedEvent>,
        now: DateTime<Utc>,
    ) -> BatchScored {
        let before = self.state.clone();
        let mut out = BatchScored::default();
        let mut listed = false;
        let mut applied_ids: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut touched: BTreeSet<&str> = BTreeSet::new();
        for event in events {
            if !seen.insert(event.event_id.as_str()) || self.recent.contains(&event.event_id) {
                out.duplicates += 1;
                continue;
            }
            let applied = self.state.apply(model, &event.behaviour());
            match applied.status {
                ApplyStatus::Applied => {}
                ApplyStatus::Duplicate => {
                    out.duplicates += 1;
                    continue;
                }
                ApplyStatus::Expired => {
                    out.expired += 1;
                    continue;
                }
            }
            out.applied += 1;
            applied_ids.push(&event.event_id);
            touched.extend(event.tags.iter().map(|t| t.as_str()));
            listed |= self.list_activity(event, serde_json::to_value(&applied).unwrap_or_default());
        }
        out.changed = listed || self.state != before;
        if !out.changed {
            return out;
        }
        let previous = self
            .snapshot
            .take()
            .unwrap_or_else(|| ScoreState::default().snapshot(model, fit, now));
        let snapshot = self.state.snapshot(model, fit, now);
        if changed(&previous, &snapshot) {
            out.announce = Some(snapshot.clone());
        }
        out.members = self.members_due(model, &touched, now);
        self.recent.record(applied_ids, now);
        self.snapshot = Some(snapshot);
        self.config_version = config_version;
        self.updated_at = now;
        self.version += 1;
        out
    }

    /// Lists the event's activity if it is among the latest [`RECENT_ACTIVITIES`] and not
    /// listed yet; whether the list changed.
    fn list_activity(&mut self, event: &TrackedEvent, applied: serde_json::Value) -> bool {
        if self
            .activities
            .iter()
            .any(|a| a.event.event_id == event.event_id)
        {
            return false;
        }
        let key = (event.occurred_at, event.event_id.as_str());
        let pos = self
            .activities
            .partition_point(|a| (a.event.occurred_at, a.event.event_id.as_str()) > key);
        if pos >= RECENT_ACTIVITIES {
            return false;
        }
        // What readers use of an event (the CRM payload's activities); properties and identity
        // would be written again with every batch.
        let event = TrackedEvent {
            properties: BTreeMap::new(),
            identity: Identity {
                lead_id: None,
                email: None,
                visitor_id: None,
            },
            ..event.clone()
        };
        self.activities.insert(pos, Activity { event, applied });
        self.activities.truncate(RECENT_ACTIVITIES);
        true
    }

    /// The segment members of `touched` tags whose weight moved out of the tolerance (or that
    /// were never written, or long ago), with the lead's interest at `now`; remembered as
    /// written. Tags the state no longer tracks are forgotten.
    fn members_due(
        &mut self,
        model: &ScoringModel,
        touched: &BTreeSet<&str>,
        now: DateTime<Utc>,
    ) -> Vec<(String, f64)> {
        let weights = self.state.interests(model, now);
        self.segments.retain(|tag, _| weights.contains_key(tag));
        let half_life = model.interest_half_life();
        let mut due = Vec::new();
        for tag in touched {
            let Some(&weight) = weights.get(*tag) else {
                continue;
            };
            let stale = self
                .segments
                .get(*tag)
                .is_none_or(|m| m.needs_rewrite(weight, half_life, now));
            if stale {
                self.segments
                    .insert((*tag).to_owned(), MemberWeight { weight, at: now });
                due.push(((*tag).to_owned(), weight));
            }
        }
        due
    }
}

/// One activity as stored by scoring: the event and what it counted for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub event: TrackedEvent,
    #[serde(default)]
    pub applied: serde_json::Value,
}

/// What [`LeadScore::score_batch`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchScored {
    /// Events taken into account.
    pub applied: usize,
    /// Events recognised as applied before (redeliveries, repeats within the batch).
    pub duplicates: usize,
    /// Events older than the score's horizon: ignored.
    pub expired: usize,
    /// Whether the record changed (and is to be written).
    pub changed: bool,
    /// The new snapshot, when its band, grade or temperature differs from the one stored
    /// before the batch: `LeadScored` is due.
    pub announce: Option<ScoreSnapshot>,
    /// Segment members to write: the tag and the lead's weight at the record's `updated_at`.
    pub members: Vec<(String, f64)>,
}

/// What a lead's segment member of one tag holds: `weight` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberWeight {
    pub weight: f64,
    pub at: DateTime<Utc>,
}

impl MemberWeight {
    /// Whether the member must be written again for the lead's interest `weight` at `now`:
    /// it shows a weight off by more than [`SEGMENT_TOLERANCE`], or is [`SEGMENT_REFRESH`] old.
    /// Without new events the member decays as the interest does, so it stays right.
    pub fn needs_rewrite(&self, weight: f64, half_life: HalfLife, now: DateTime<Utc>) -> bool {
        let shown = self.weight * half_life.remaining(now - self.at);
        now - self.at >= SEGMENT_REFRESH
            || shown.is_nan()
            || shown <= 0.0
            || weight > shown * SEGMENT_TOLERANCE
            || weight * SEGMENT_TOLERANCE < shown
    }
}

/// The ids of the events a lead's score applied lately, by when they were applied, oldest
/// first: those applied within [`REDELIVERY_WINDOW`], at most [`MAX_RECENT_IDS`]. Each id is
/// kept as a 64-bit fingerprint (16 hex digits, whatever the id's length): two events of one
/// lead within the window share one with a chance of about n²/2⁶⁵, 10⁻¹⁵ for 256.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentEvents(VecDeque<AppliedIds>);

/// The ids applied by one write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppliedIds {
    /// When (seconds since the epoch).
    at: i64,
    ids: Vec<String>,
}

fn fingerprint(event_id: &str) -> String {
    let digest = Sha256::digest(event_id.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl RecentEvents {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many ids are kept.
    pub fn len(&self) -> usize {
        self.0.iter().map(|b| b.ids.len()).sum()
    }

    pub fn contains(&self, event_id: &str) -> bool {
        let f = fingerprint(event_id);
        self.0.iter().any(|b| b.ids.contains(&f))
    }

    /// Keeps `ids` as applied at `at`, and forgets ids applied before the window or beyond
    /// the bound (the oldest first).
    pub fn record<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>, at: DateTime<Utc>) {
        let ids: Vec<String> = ids.into_iter().map(fingerprint).collect();
        if !ids.is_empty() {
            self.0.push_back(AppliedIds {
                at: at.timestamp(),
                ids,
            });
        }
        let oldest = (at - REDELIVERY_WINDOW).timestamp();
        while self.0.front().is_some_and(|b| b.at < oldest) {
            self.0.pop_front();
        }
        let mut excess = self.len().saturating_sub(MAX_RECENT_IDS);
        while excess > 0 {
            let Some(front) = self.0.front_mut() else {
                break;
            };
            if front.ids.len() <= excess {
                excess -= front.ids.len();
                self.0.pop_front();
            } else {
                front.ids.drain(..excess);
                excess = 0;
            }
        }
    }
}

/// A lead's interest in one tag, as a segment lists it: `weight` at `at`, decaying from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMember {
    pub lead_id: LeadId,
    pub weight: f64,
    pub at: DateTime<Utc>,
}

impl SegmentMember {
    /// The interest at `now`: decayed with the model's interest half-life since `at`.
    pub fn weight_at(&self, half_life: HalfLife, now: DateTime<Utc>) -> f64 {
        self.weight * half_life.remaining(now - self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::Tag;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn event(id: &str, kind: &str, at: &str, tags: &[&str]) -> TrackedEvent {
        TrackedEvent {
            event_id: id.into(),
            event_type: kind.into(),
            occurred_at: t(at),
            url: Some("https://www.example.com/blog".into()),
            tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
            properties: BTreeMap::from([("plan".to_owned(), serde_json::json!("pro"))]),
            identity: Identity {
                lead_id: None,
                email: None,
                visitor_id: Some("v-1".into()),
            },
        }
    }

    fn batch(record: &mut LeadScore, events: &[TrackedEvent], now: &str) -> BatchScored {
        let model = ScoringModel::example();
        record.score_batch(&model, &FitProfile::default(), 1, events, t(now))
    }

    fn lead() -> LeadScore {
        LeadScore::new(
            LeadId::new_at(t("2026-11-01T00:00:00Z")),
            t("2026-11-01T00:00:00Z"),
        )
    }

    #[test]
    fn a_batch_is_scored_once_whether_repeated_within_itself_or_redelivered() {
        let mut record = lead();
        let download = event("d-1", "download", "2026-11-02T10:00:00Z", &["whitepaper"]);
        let view = event("v-1", "page_view", "2026-11-02T10:01:00Z", &[]);
        let first = batch(
            &mut record,
            &[download.clone(), view.clone(), download.clone()],
            "2026-11-02T10:02:00Z",
        );
        assert_eq!((first.applied, first.duplicates), (2, 1));
        assert!(first.changed);
        assert_eq!(record.version, 1);
        assert_eq!(record.activities.len(), 2);
        let score = record.snapshot.clone().unwrap().score;

        // The same batch again (SQS redelivery), later: nothing to write.
        let again = batch(&mut record, &[view, download], "2026-11-02T10:05:00Z");
        assert_eq!((again.applied, again.duplicates), (0, 2));
        assert!(!again.changed && again.announce.is_none() && again.members.is_empty());
        assert_eq!(record.version, 1);
        assert_eq!(record.snapshot.unwrap().score, score);
    }

    #[test]
    fn an_id_seen_lately_is_a_duplicate_even_with_another_time() {
        let mut record = lead();
        batch(
            &mut record,
            &[event("d-1", "download", "2026-11-02T10:00:00Z", &[])],
            "2026-11-02T10:00:00Z",
        );
        // A tracker that stamps its retry with the time of sending.
        let retried = batch(
            &mut record,
            &[event("d-1", "download", "2026-11-02T10:07:00Z", &[])],
            "2026-11-02T10:08:00Z",
        );
        assert_eq!((retried.applied, retried.duplicates), (0, 1));
        assert_eq!(record.version, 1);
    }

    #[test]
    fn a_redelivery_after_the_window_changes_nothing() {
        let mut record = lead();
        // A plain page view matches a rule; a `ping` matches none and has no tags, so the
        // engine does not keep it: only the activity list knows it.
        let events = [
            event("v-1", "page_view", "2026-11-02T10:00:00Z", &["crm"]),
            event("p-1", "ping", "2026-11-02T10:01:00Z", &[]),
        ];
        batch(&mut record, &events, "2026-11-02T10:02:00Z");
        // A write past the window forgets the ids.
        let next = event("n-1", "download", "2026-11-30T00:00:00Z", &[]);
        assert!(batch(&mut record, &[next], "2026-11-30T00:00:00Z").changed);
        assert!(!record.recent.contains("p-1") && !record.recent.contains("v-1"));
        let before = record.clone();
        let late = batch(&mut record, &events, "2026-12-01T00:00:00Z");
        assert_eq!(late.applied, 1, "the ping is not recognised by id any more");
        assert_eq!(late.duplicates, 1, "the view is recognised by the engine");
        assert!(!late.changed, "{late:?}");
        assert_eq!(record.activities, before.activities);
        assert_eq!(record.state, before.state);
    }

    #[test]
    fn activities_are_the_latest_by_occurrence_without_properties_or_identity() {
        let mut record = lead();
        let events: Vec<TrackedEvent> = (0..RECENT_ACTIVITIES + 5)
            .map(|i| {
                event(
                    &format!("e-{i:02}"),
                    "page_view",
                    &format!("2026-11-02T10:{i:02}:00Z"),
                    &[],
                )
            })
            .collect();
        // Newest first, in two batches out of order.
        batch(&mut record, &events[10..], "2026-11-02T11:00:00Z");
        batch(&mut record, &events[..10], "2026-11-02T11:01:00Z");
        let ids: Vec<&str> = record
            .activities
            .iter()
            .map(|a| a.event.event_id.as_str())
            .collect();
        let want: Vec<String> = (5..RECENT_ACTIVITIES + 5)
            .rev()
            .map(|i| format!("e-{i:02}"))
            .collect();
        assert_eq!(ids, want);
        let a = &record.activities[0];
        assert!(a.event.properties.is_empty() && a.event.identity.visitor_id.is_none());
        assert_eq!(a.applied["status"], "applied");
    }

    #[test]
    fn a_segment_member_is_written_when_its_weight_moves_out_of_the_tolerance() {
        let mut record = lead();
        let view = |i: u32| {
            event(
                &format!("v-{i}"),
                "page_view",
                &format!("2026-11-02T10:{i:02}:00Z"),
                &["crm"],
            )
        };
        let first = batch(&mut record, &[view(0)], "2026-11-02T10:00:00Z");
        assert_eq!(first.members.len(), 1, "joining the segment");
        assert!((first.members[0].1 - 1.0).abs() < 1e-9);
        let second = batch(&mut record, &[view(1)], "2026-11-02T10:01:00Z");
        assert_eq!(second.members.len(), 1, "1 -> 2 is more than 25 %");
        let mut written = 2;
        for i in 2..12 {
            written += batch(
                &mut record,
                &[view(i)],
                &format!("2026-11-02T10:{i:02}:00Z"),
            )
            .members
            .len();
        }
        // Each write lets the interest grow by a quarter before the next: fewer writes than
        // events, and the member within 25 % of the interest.
        assert!(written < 12, "{written} writes for 12 events");
        let m = &record.segments["crm"];
        let now = t("2026-11-02T10:11:00Z");
        let truth = record.state.interests(&ScoringModel::example(), now)["crm"];
        let shown = m.weight
            * ScoringModel::example()
                .interest_half_life()
                .remaining(now - m.at);
        assert!(truth <= shown * SEGMENT_TOLERANCE && truth >= shown / SEGMENT_TOLERANCE);
        // An event without the tag touches no member.
        let other = batch(
            &mut record,
            &[event("x", "download", "2026-11-02T10:30:00Z", &[])],
            "2026-11-02T10:30:00Z",
        );
        assert!(other.members.is_empty());
    }

    #[test]
    fn a_member_untouched_for_half_a_year_is_written_again() {
        let hl = HalfLife::days(30.0).unwrap();
        let at = t("2026-01-01T00:00:00Z");
        let m = MemberWeight { weight: 4.0, at };
        let later = at + Duration::days(30);
        assert!(
            !m.needs_rewrite(2.0, hl, later),
            "decayed as the interest did"
        );
        assert!(m.needs_rewrite(3.0, hl, later), "grew by half");
        assert!(m.needs_rewrite(1.0, hl, later), "fell by half");
        let much_later = at + SEGMENT_REFRESH;
        let decayed = 4.0 * hl.remaining(SEGMENT_REFRESH);
        assert!(m.needs_rewrite(decayed, hl, much_later));
    }

    #[test]
    fn recent_ids_are_bounded_by_count_and_window() {
        let mut recent = RecentEvents::default();
        let at = t("2026-11-02T00:00:00Z");
        let ids: Vec<String> = (0..MAX_RECENT_IDS + 10).map(|i| format!("e-{i}")).collect();
        recent.record(ids[..10].iter().map(String::as_str), at);
        recent.record(
            ids[10..].iter().map(String::as_str),
            at + Duration::hours(1),
        );
        assert_eq!(recent.len(), MAX_RECENT_IDS);
        assert!(!recent.contains("e-9"), "the oldest went first");
        assert!(recent.contains("e-10") && recent.contains(&ids[MAX_RECENT_IDS + 9]));
        recent.record(["late"], at + REDELIVERY_WINDOW + Duration::hours(2));
        assert_eq!(
            recent.len(),
            1,
            "everything older than the window is forgotten"
        );
        assert!(recent.contains("late") && !recent.contains("e-10"));
    }

    #[test]
    fn a_member_s_interest_halves_each_half_life_and_never_grows() {
        let at: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        let m = SegmentMember {
            lead_id: LeadId::new_at(at),
            weight: 2.0,
            at,
        };
        let hl = HalfLife::days(30.0).unwrap();
        assert!((m.weight_at(hl, at + chrono::Duration::days(30)) - 1.0).abs() < 1e-12);
        assert!((m.weight_at(hl, at + chrono::Duration::days(60)) - 0.5).abs() < 1e-12);
        assert_eq!(m.weight_at(hl, at - chrono::Duration::days(1)), 2.0);
    }
}
