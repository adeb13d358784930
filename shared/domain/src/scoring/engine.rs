//! The scoring engine: a lead's [`ScoreState`], updated event by event, read at any moment.

use std::borrow::Cow;
use std::collections::VecDeque;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::model::{decay, CapPeriod, Grade, ScoreBand, ScoringModel, Temperature, RETENTION_DAYS};
use super::points::Points;
use super::FitProfile;
use crate::tag::Tag;

const DAY_MS: i64 = 86_400_000;
/// How far back from the newest event single events are kept (see [`ScoreState`]).
pub const RETENTION_MS: i64 = RETENTION_DAYS as i64 * DAY_MS;
/// The most single events a state keeps; beyond it the horizon moves up (see [`ScoreState`]).
pub const MAX_KEPT_EVENTS: usize = 500;
/// The most distinct tags a state tracks; beyond it the weakest tag is forgotten.
pub const MAX_TAGS: usize = 64;
/// The most tags of one event that count (the rest are ignored).
pub const MAX_EVENT_TAGS: usize = 20;
/// The most entries of [`ScoreSnapshot::top_events`].
pub const TOP_EVENTS: usize = 5;
/// Rule slots of a state (one bit each in a kept event).
const MAX_RULE_SLOTS: usize = 64;

/// A behavioural event as the scoring sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BehaviourEvent {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What happened when an event was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub status: ApplyStatus,
    /// Every behaviour rule that matched, in model order, with what became of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleApplied>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStatus {
    /// The event was taken into account (it may still have matched no rule).
    Applied,
    /// The state already holds this event (same `event_id` and `occurred_at`): nothing changed.
    Duplicate,
    /// The event is older than the state's horizon (see [`ScoreState`]): nothing changed.
    Expired,
}

/// A rule that matched an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleApplied {
    pub rule_id: String,
    /// The rule's points in the base model (a product may adjust them; see the snapshot).
    pub points: Points,
    #[serde(flatten)]
    pub outcome: RuleOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    /// The event counts for the rule.
    Counted,
    /// The cap of the rule's bucket was full; the event counts in place of an earlier one,
    /// which no longer counts.
    Replaced { replaced_event_id: String },
    /// The cap of the rule's bucket is full of later events: the event does not count.
    Capped,
}

impl Applied {
    fn status(status: ApplyStatus) -> Self {
        Self {
            status,
            rules: Vec::new(),
        }
    }

    /// Whether the event counts for at least one rule.
    pub fn counted(&self) -> bool {
        self.rules.iter().any(|r| r.outcome != RuleOutcome::Capped)
    }
}

/// Whether a rule contributes by behaviour or by fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContributionKind {
    Behaviour,
    Fit,
}

/// What one rule adds to the score now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    pub rule_id: String,
    pub kind: ContributionKind,
    pub points: Points,
}

/// One of the events that add most to the score now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEvent {
    pub event_id: String,
    pub event_type: String,
    /// To the millisecond.
    pub occurred_at: DateTime<Utc>,
    pub points_now: Points,
}

/// A lead's score at one moment, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreSnapshot {
    pub at: DateTime<Utc>,
    /// `behaviour + fit`, and exactly the sum of `contributions`.
    pub score: Points,
    /// Decayed behavioural points: the sum of the behaviour contributions.
    pub behaviour: Points,
    /// Demographic points: the sum of the fit contributions.
    pub fit: Points,
    pub grade: Grade,
    pub temperature: Temperature,
    /// The positive, undecayed behavioural points of the temperature window, which set
    /// `temperature`.
    pub recent_points: Points,
    /// Against the thresholds of the lead's product (or the model's).
    pub band: ScoreBand,
    /// The product (business unit) the lead's interests point to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    pub meets_mql_minimum: bool,
    /// Every rule that adds or takes points, biggest first (by magnitude). Each is rounded to
    /// two decimals, and the score is their sum.
    pub contributions: Vec<Contribution>,
    /// Up to five events that add (or take) most now, biggest first.
    pub top_events: Vec<TopEvent>,
}

impl ScoreSnapshot {
    /// The agreed MQL definition: the score reaches the MQL threshold and the lead meets the
    /// demographic minimum.
    pub fn is_mql(&self) -> bool {
        self.band == ScoreBand::Mql && self.meets_mql_minimum
    }

    /// The score reaches at least the engagement threshold.
    pub fn is_engaged(&self) -> bool {
        self.band >= ScoreBand::Engaged
    }
}

/// Whether what the lead's owners see has changed between two snapshots: band, grade or
/// temperature (`LeadScored` is announced only then).
pub fn changed(previous: &ScoreSnapshot, now: &ScoreSnapshot) -> bool {
    previous.band != now.band
        || previous.grade != now.grade
        || previous.temperature != now.temperature
}

/// A decaying sum: `v` is its value at time `t` (ms); it decays with half-life `hl` (days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleSlot {
    id: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    v: f64,
    #[serde(default, skip_serializing_if = "is_zero_i")]
    t: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    hl: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TagSlot {
    tag: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    v: f64,
    #[serde(default, skip_serializing_if = "is_zero_i")]
    t: i64,
}

/// One event the state keeps: id, time (ms), the rule slots it counts for (`r`) and the tag
/// slots it carries (`g`), as bit sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Kept {
    id: String,
    t: i64,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    r: u64,
    #[serde(default, skip_serializing_if = "is_zero_u")]
    g: u64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_i(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u(v: &u64) -> bool {
    *v == 0
}

impl Kept {
    fn is_empty(&self) -> bool {
        self.r == 0 && self.g == 0
    }
}

/// Adds one event at `te` to the decaying sum `(v, t)`.
fn fold(v: &mut f64, t: &mut i64, te: i64, hl_ms: f64) {
    if *v == 0.0 {
        *v = 1.0;
        *t = te;
    } else if te <= *t {
        *v += decay(*t - te, hl_ms);
    } else {
        *v = *v * decay(te - *t, hl_ms) + 1.0;
        *t = te;
    }
}

/// The decaying sum `(v, t)` at `x`.
fn value_at(v: f64, t: i64, x: i64, hl_ms: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v * decay(x - t, hl_ms)
    }
}

fn bits(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if set == 0 {
            None
        } else {
            let b = set.trailing_zeros() as usize;
            set &= set - 1;
            Some(b)
        }
    })
}

fn ms_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_millis())
        .unwrap_or(i64::MAX)
}

/// The UTC calendar bucket `[start, end)` (ms) of a cap period that holds `t`.
fn bucket(per: CapPeriod, t: i64) -> (i64, i64) {
    let day = t.div_euclid(DAY_MS);
    match per {
        CapPeriod::Day => (day * DAY_MS, (day + 1) * DAY_MS),
        CapPeriod::Week => {
            // 1970-01-01 was a Thursday; ISO weeks start on Monday.
            let monday = (day + 3).div_euclid(7) * 7 - 3;
            (monday * DAY_MS, (monday + 7) * DAY_MS)
        }
        CapPeriod::Month => {
            let Some(d) = DateTime::from_timestamp_millis(t).map(|d| d.date_naive()) else {
                return (day * DAY_MS, (day + 1) * DAY_MS);
            };
            let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1);
            let next = if d.month() == 12 {
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
            };
            match (first, next) {
                (Some(a), Some(b)) => (ms_of(a), ms_of(b)),
                _ => (day * DAY_MS, (day + 1) * DAY_MS),
            }
        }
    }
}

/// The tags of an event that count: normalised as [`Tag::parse`] does, valid, distinct, at
/// most [`MAX_EVENT_TAGS`]. Borrowed where already normal.
fn event_tags(raw: &[String]) -> Vec<Cow<'_, str>> {
    let mut tags: Vec<Cow<'_, str>> = Vec::with_capacity(raw.len().min(MAX_EVENT_TAGS));
    for t in raw {
        if tags.len() == MAX_EVENT_TAGS {
            break;
        }
        if let Some(t) = Tag::normalise(t) {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    tags
}

/// A lead's scoring state: kept with the lead (JSON / a DynamoDB map), bounded in size, and
/// enough to compute the exact score at any later moment without a batch job.
///
/// # What it holds
/// - **Single events** of the last [`RETENTION_DAYS`] (90) days before the newest event seen:
///   id, time (to the millisecond), the rules they count for and their tags. Events that match
///   no rule and carry no tag are not kept (they change nothing), nor are events that no longer
///   count for any rule and carry no tag. These serve caps, temperature, duplicates, the events
///   after a moment asked about, and the top events. At most [`MAX_KEPT_EVENTS`] (500), plus
///   the events of cap buckets still open at the horizon (bounded by the caps).
/// - **Per rule and per tag, one decaying sum** of the events older than that: their value at
///   one moment and the half-life it decays with. Single events are folded into it as the
///   horizon passes them, so the state does not grow with every page view.
///
/// Worst case about 40 KB of JSON (500 kept events); a typical lead is far smaller.
///
/// # The horizon
/// The horizon is 90 days before the start of the (UTC) day of the newest event seen, or
/// later when more than 500 events fall within it: then it moves up to keep the latest 7/8 of
/// 500. **An event older than the horizon when
/// it arrives is ignored** ([`ApplyStatus::Expired`]): its cap bucket may be forgotten, and a
/// duplicate of it could no longer be told apart. Events older than 90 days are rejected by
/// tracking anyway, and a rescore ([`ScoreState::rescore`]) applies events in time order, so it
/// never meets this. A cap bucket that straddles the horizon keeps its counted events until it
/// has closed, so a late event in it is still capped correctly.
///
/// # Order and duplicates
/// The final state's score does not depend on the order in which events arrive (as long as no
/// event arrives older than the horizon): in every cap bucket the `count` *latest* events
/// count (by time, then event id), and a late event replaces the earliest counted one.
/// `apply` recognises an event it still keeps by `event_id` and `occurred_at` (a redelivery
/// carries both), so applying an event twice changes nothing. It cannot recognise an event it
/// no longer keeps: one that counted for no rule and had no tags (harmless, it changes
/// nothing again), or one older than the horizon (ignored). The caller should still dedupe at
/// the store (idempotency records), which also covers an id redelivered with another time.
///
/// # Exactness
/// `snapshot(at)` is exact (up to floating point) for any `at` not before the horizon: the
/// behaviour score is Σ points × 2^(−(at − occurred_at)/half-life) over the counted events
/// that occurred at or before `at`. For an earlier `at` the folded sums are extrapolated
/// backwards, an approximation.
///
/// # Model changes
/// Points (also per product) and thresholds are read from the model at snapshot time, so
/// changing them needs no recomputation. Changed matching, caps or half-lives apply to new
/// events only (folded sums keep their value and decay with the new half-life from then on);
/// "reset and rescore" ([`ScoreState::rescore`] over the stored events) makes them retroactive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    /// The newest `occurred_at` applied (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<i64>,
    /// Events before it (ms) are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    horizon: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RuleSlot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<TagSlot>,
    /// The half-life (days) of the tags' folded sums.
    #[serde(default, skip_serializing_if = "is_zero")]
    tag_hl: f64,
    /// Sorted by time, then id.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    events: VecDeque<Kept>,
}

impl ScoreState {
    /// The state after applying `events` in time order: "reset and rescore".
    pub fn rescore<'a>(
        model: &ScoringModel,
        events: impl IntoIterator<Item = &'a BehaviourEvent>,
    ) -> Self {
        let mut events: Vec<&BehaviourEvent> = events.into_iter().collect();
        events.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
        let mut state = Self::default();
        for e in events {
            state.apply(model, e);
        }
        state
    }

    /// The newest `occurred_at` applied.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest.and_then(DateTime::from_timestamp_millis)
    }

    /// Events before this moment are ignored by [`ScoreState::apply`].
    pub fn horizon(&self) -> Option<DateTime<Utc>> {
        self.horizon.and_then(DateTime::from_timestamp_millis)
    }

    /// How many single events the state keeps.
    pub fn kept_events(&self) -> usize {
        self.events.len()
    }

    /// When the kept events counted for behaviour rule `i` occurred (tests of caps).
    #[cfg(test)]
    pub(crate) fn counted_times(&self, model: &ScoringModel, i: usize) -> Vec<DateTime<Utc>> {
        let id = model.behaviour()[i].id.as_str();
        let Some(slot) = self.rules.iter().position(|s| s.id == id) else {
            return Vec::new();
        };
        self.events
            .iter()
            .filter(|k| k.r & (1u64 << slot) != 0)
            .filter_map(|k| DateTime::from_timestamp_millis(k.t))
            .collect()
    }

    /// Records the effect of one event (see [`ScoreState`] for duplicates and late events).
    pub fn apply(&mut self, model: &ScoringModel, event: &BehaviourEvent) -> Applied {
        let t = event.occurred_at.timestamp_millis();
        if self.horizon.is_some_and(|h| t < h) {
            return Applied::status(ApplyStatus::Expired);
        }
        let id = event.event_id.as_str();
        let pos = self
            .events
            .partition_point(|k| (k.t, k.id.as_str()) < (t, id));
        if self.events.get(pos).is_some_and(|k| k.t == t && k.id == id) {
            return Applied::status(ApplyStatus::Duplicate);
        }

        let tags = event_tags(&event.tags);
        let url = event.url.as_deref().map(super::glob::lower);
        let mut applied = Applied::status(ApplyStatus::Applied);
        let mut counted = 0u64;
        let mut emptied = false;
        for rule in model.behaviour() {
            if !rule.matches(&event.event_type, url.as_deref(), &tags) {
                continue;
            }
            let (slot, gc) = self.rule_slot(model, rule.id.as_str());
            emptied |= gc;
            let bit = 1u64 << slot;
            let outcome = match rule.cap {
                None => RuleOutcome::Counted,
                Some(cap) => {
                    let (start, end) = bucket(cap.per, t);
                    let lo = self.events.partition_point(|k| k.t < start);
                    let hi = self.events.partition_point(|k| k.t < end);
                    let mut count = 0u32;
                    let mut earliest = None;
                    for (j, k) in self.events.range(lo..hi).enumerate() {
                        if k.r & bit != 0 {
                            earliest.get_or_insert(lo + j);
                            count += 1;
                        }
                    }
                    match earliest {
                        Some(j) if count >= cap.count => {
                            let k = &mut self.events[j];
                            if (t, id) > (k.t, k.id.as_str()) {
                                k.r &= !bit;
                                emptied |= k.is_empty();
                                RuleOutcome::Replaced {
                                    replaced_event_id: k.id.clone(),
                                }
                            } else {
                                RuleOutcome::Capped
                            }
                        }
                        _ => RuleOutcome::Counted,
                    }
                }
            };
            if outcome != RuleOutcome::Capped {
                counted |= bit;
            }
            applied.rules.push(RuleApplied {
                rule_id: rule.id.to_string(),
                points: rule.points,
                outcome,
            });
        }

        let mut tagged = 0u64;
        for tag in &tags {
            let (slot, gc) = self.tag_slot(model, tag.as_ref(), tagged);
            emptied |= gc;
            tagged |= 1u64 << slot;
        }

        let mut pos = pos;
        if emptied {
            self.events.retain(|k| !k.is_empty());
            pos = self
                .events
                .partition_point(|k| (k.t, k.id.as_str()) < (t, id));
        }
        if counted != 0 || tagged != 0 {
            self.events.insert(
                pos,
                Kept {
                    id: id.to_owned(),
                    t,
                    r: counted,
                    g: tagged,
                },
            );
        }

        if self.newest.is_none_or(|n| t > n) {
            self.newest = Some(t);
            // Day-aligned, so that the horizon moves (and kept events are folded) at most once
            // a day of event time.
            let day_start = t.div_euclid(DAY_MS) * DAY_MS;
            self.advance_horizon(model, day_start.saturating_sub(RETENTION_MS));
        }
        if self.events.len() > MAX_KEPT_EVENTS {
            // Down to 7/8 of the limit, so that this happens once in many events.
            let excess = self.events.len() - MAX_KEPT_EVENTS * 7 / 8;
            let cut = self.events[excess - 1].t.saturating_add(1);
            self.advance_horizon(model, cut);
        }
        applied
    }

    /// The slot of a rule, made if need be. When all slots are taken, one of a rule the model
    /// no longer has is reused (a model has at most 64 rules). The flag tells whether kept
    /// events may have become empty.
    fn rule_slot(&mut self, model: &ScoringModel, id: &str) -> (usize, bool) {
        if let Some(i) = self.rules.iter().position(|s| s.id == id) {
            return (i, false);
        }
        let fresh = RuleSlot {
            id: id.to_owned(),
            v: 0.0,
            t: 0,
            hl: 0.0,
        };
        if self.rules.len() < MAX_RULE_SLOTS {
            self.rules.push(fresh);
            return (self.rules.len() - 1, false);
        }
        let i = self
            .rules
            .iter()
            .position(|s| model.behaviour_index(&s.id).is_none())
            .unwrap_or(MAX_RULE_SLOTS - 1);
        let bit = 1u64 << i;
        for k in &mut self.events {
            k.r &= !bit;
        }
        self.rules[i] = fresh;
        (i, true)
    }

    /// The slot of a tag, made if need be. When all slots are taken, the tag that weighs least
    /// now is forgotten (not one of `keep`).
    fn tag_slot(&mut self, model: &ScoringModel, tag: &str, keep: u64) -> (usize, bool) {
        if let Some(i) = self.tags.iter().position(|s| s.tag == tag) {
            return (i, false);
        }
        let fresh = TagSlot {
            tag: tag.to_owned(),
            v: 0.0,
            t: 0,
        };
        if self.tags.len() < MAX_TAGS {
            self.tags.push(fresh);
            return (self.tags.len() - 1, false);
        }
        let now = self.newest.unwrap_or_default();
        let weights = self.tag_weights(model, now);
        let i = (0..self.tags.len())
            .filter(|i| keep & (1u64 << i) == 0)
            .min_by(|a, b| weights[*a].total_cmp(&weights[*b]))
            .unwrap_or(0);
        let bit = 1u64 << i;
        for k in &mut self.events {
            k.g &= !bit;
        }
        self.tags[i] = fresh;
        (i, true)
    }

    /// Moves the horizon up to `h` and folds the kept events before it into the decaying sums,
    /// except those counted in a cap bucket that is still open at the horizon.
    fn advance_horizon(&mut self, model: &ScoringModel, h: i64) {
        if self.horizon.is_some_and(|old| old >= h) {
            return;
        }
        self.horizon = Some(h);
        let n = self.events.partition_point(|k| k.t < h);
        if n == 0 {
            return;
        }
        // The model's view of each rule slot: its cap, and its half-life now.
        let info: Vec<(Option<CapPeriod>, f64)> = self
            .rules
            .iter()
            .map(|s| match model.behaviour_index(&s.id) {
                Some(i) => (
                    model.behaviour()[i].cap.map(|c| c.per),
                    model.half_life_ms(i),
                ),
                // A rule the model no longer has keeps decaying as it did.
                None if s.hl > 0.0 => (None, s.hl * DAY_MS as f64),
                None => (None, model.decay().default_half_life_days.as_ms()),
            })
            .collect();
        self.tag_hl = model.interest_half_life().as_days();
        let tag_hl_ms = model.interest_half_life().as_ms();

        let mut write = 0;
        for read in 0..n {
            let (t, r, g) = {
                let k = &self.events[read];
                (k.t, k.r, k.g)
            };
            let open = bits(r).any(|b| info[b].0.is_some_and(|per| bucket(per, t).1 > h));
            if open {
                self.events.swap(write, read);
                write += 1;
                continue;
            }
            for b in bits(r) {
                let s = &mut self.rules[b];
                // Folded sums decay with the model's half-life from now on.
                s.hl = info[b].1 / DAY_MS as f64;
                fold(&mut s.v, &mut s.t, t, info[b].1);
            }
            for b in bits(g) {
                let s = &mut self.tags[b];
                fold(&mut s.v, &mut s.t, t, tag_hl_ms);
            }
        }
        self.events.drain(write..n);
    }

    /// Interest weight by tag slot at `x` (ms): events at or before `x` only.
    fn tag_weights(&self, model: &ScoringModel, x: i64) -> Vec<f64> {
        let folded_hl = if self.tag_hl > 0.0 {
            self.tag_hl * DAY_MS as f64
        } else {
            model.interest_half_life().as_ms()
        };
        let hl = model.interest_half_life().as_ms();
        let mut w: Vec<f64> = self
            .tags
            .iter()
            .map(|s| value_at(s.v, s.t, x, folded_hl))
            .collect();
        let visible = self.events.partition_point(|k| k.t <= x);
        for k in self.events.range(..visible) {
            if k.g != 0 {
                let d = decay(x - k.t, hl);
                for b in bits(k.g) {
                    w[b] += d;
                }
            }
        }
        w
    }

    /// The lead's interest profile at `at`: per tag, Σ 2^(−(at − occurred_at)/half-life) over
    /// the events carrying it (1.0 each when fresh). Non-negative; decays as `at` moves on.
    pub fn interests(
        &self,
        model: &ScoringModel,
        at: DateTime<Utc>,
    ) -> std::collections::BTreeMap<String, f64> {
        let w = self.tag_weights(model, at.timestamp_millis());
        self.tags
            .iter()
            .zip(w)
            .filter(|(_, w)| *w > 0.0)
            .map(|(s, w)| (s.tag.clone(), w))
            .collect()
    }

    /// The score of the lead at `at`, explained.
    pub fn snapshot(
        &self,
        model: &ScoringModel,
        fit: &FitProfile,
        at: DateTime<Utc>,
    ) -> ScoreSnapshot {
        let x = at.timestamp_millis();
        let visible = self
            .events
            .range(..self.events.partition_point(|k| k.t <= x));

        // Interests matter here only to find the product.
        let weights = if model.products().is_empty() {
            Vec::new()
        } else {
            self.tag_weights(model, x)
        };
        let product = model.product_for(|tag| {
            self.tags
                .iter()
                .position(|s| s.tag == tag.as_str())
                .map_or(0.0, |i| weights[i])
        });

        let rules = model.behaviour();
        let slot_rule: Vec<Option<usize>> = self
            .rules
            .iter()
            .map(|s| model.behaviour_index(&s.id))
            .collect();
        let points: Vec<Points> = (0..rules.len()).map(|i| model.points(i, product)).collect();
        let mut decayed = vec![0.0f64; rules.len()];
        let mut recent = vec![0u32; rules.len()];
        for (s, rule) in self.rules.iter().zip(&slot_rule) {
            if let Some(i) = *rule {
                decayed[i] += value_at(s.v, s.t, x, s.hl * DAY_MS as f64);
            }
        }
        let window_start = x.saturating_sub(model.temperature().window_ms());
        let mut top: Vec<(f64, &Kept, usize)> = Vec::with_capacity(TOP_EVENTS + 1);
        for k in visible {
            if k.r == 0 {
                continue;
            }
            let mut cached: (f64, f64) = (f64::NAN, 0.0);
            let mut value = 0.0;
            let mut first_rule = None;
            for b in bits(k.r) {
                let Some(i) = slot_rule[b] else { continue };
                let hl = model.half_life_ms(i);
                if hl != cached.0 {
                    cached = (hl, decay(x - k.t, hl));
                }
                decayed[i] += cached.1;
                value += points[i].as_f64() * cached.1;
                if k.t > window_start {
                    recent[i] += 1;
                }
                first_rule.get_or_insert(i);
            }
            // Points::round(value) != 0, without rounding.
            if let Some(i) = first_rule.filter(|_| (value * 100.0).abs() >= 0.5) {
                push_top(&mut top, (value, k, i));
            }
        }

        let mut contributions: Vec<Contribution> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if decayed[i] > 0.0 {
                let p = Points::round(points[i].as_f64() * decayed[i]);
                if p != Points::ZERO {
                    contributions.push(Contribution {
                        rule_id: rule.id.to_string(),
                        kind: ContributionKind::Behaviour,
                        points: p,
                    });
                }
            }
        }
        for rule in model.fit() {
            if rule.points != Points::ZERO && rule.matches(fit) {
                contributions.push(Contribution {
                    rule_id: rule.id.to_string(),
                    kind: ContributionKind::Fit,
                    points: rule.points,
                });
            }
        }
        contributions.sort_by(|a, b| {
            b.points
                .abs()
                .cmp(&a.points.abs())
                .then_with(|| (a.kind as u8).cmp(&(b.kind as u8)))
                .then_with(|| a.rule_id.cmp(&b.rule_id))
        });
        let sum = |kind| {
            contributions
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| c.points)
                .sum::<Points>()
        };
        let behaviour = sum(ContributionKind::Behaviour);
        let fit_points = sum(ContributionKind::Fit);
        let score = behaviour + fit_points;
        let recent_points: Points = recent
            .iter()
            .zip(&points)
            .filter(|(_, p)| p.is_positive())
            .map(|(n, p)| *p * *n)
            .sum();
        let grade = model.grades().grade(fit_points);
        ScoreSnapshot {
            at,
            score,
            behaviour,
            fit: fit_points,
            grade,
            temperature: model.temperature().temperature(recent_points),
            recent_points,
            band: model.thresholds_for(product).band(score),
            product: product.map(|p| model.products()[p].id.to_string()),
            meets_mql_minimum: model.mql_minimum().is_met(fit, grade),
            contributions,
            top_events: top
                .into_iter()
                .map(|(value, k, i)| TopEvent {
                    event_id: k.id.clone(),
                    event_type: rules[i].event_type.as_str().to_owned(),
                    occurred_at: DateTime::from_timestamp_millis(k.t).unwrap_or_default(),
                    points_now: Points::round(value),
                })
                .collect(),
        }
    }
}

/// Keeps the [`TOP_EVENTS`] biggest by magnitude, then latest, then by id.
fn push_top<'a>(top: &mut Vec<(f64, &'a Kept, usize)>, item: (f64, &'a Kept, usize)) {
    let before = |a: &(f64, &Kept, usize), b: &(f64, &Kept, usize)| {
        b.0.abs()
            .total_cmp(&a.0.abs())
            .then_with(|| b.1.t.cmp(&a.1.t))
            .then_with(|| a.1.id.cmp(&b.1.id))
    };
    if top.len() == TOP_EVENTS && top[TOP_EVENTS - 1].0.abs() > item.0.abs() {
        return;
    }
    let at = top.partition_point(|x| before(x, &item).is_lt());
    if at < TOP_EVENTS {
        top.insert(at, item);
        top.truncate(TOP_EVENTS);
    }
}
