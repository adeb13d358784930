use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::scoring::ScoreSnapshot;

/// The lifecycle stage of a lead: the shared language of marketing and sales (docs/domain.md,
/// "Lifecycle stages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    Raw,
    Inquiry,
    Engaged,
    #[serde(rename = "MQL")]
    Mql,
    #[serde(rename = "SAL")]
    Sal,
    #[serde(rename = "SQL")]
    Sql,
    Opportunity,
    Customer,
    Rejected,
    Recycled,
}

/// A stage change the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a lead cannot move from {from} to {to}; allowed from {from}: {}", allowed_list(.allowed))]
pub struct TransitionError {
    pub from: Stage,
    pub to: Stage,
    pub allowed: Vec<Stage>,
}

fn allowed_list(allowed: &[Stage]) -> String {
    if allowed.is_empty() {
        return "none".to_owned();
    }
    allowed
        .iter()
        .map(Stage::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Raw,
        Stage::Inquiry,
        Stage::Engaged,
        Stage::Mql,
        Stage::Sal,
        Stage::Sql,
        Stage::Opportunity,
        Stage::Customer,
        Stage::Rejected,
        Stage::Recycled,
    ];

    /// The stages this one may move to. The loop of docs/domain.md: sales hands leads back to
    /// marketing as Recycled (may qualify again) or Rejected (never buys, a terminal stage);
    /// a Customer stays a Customer and is cared for by marketing without leaving the stage.
    pub fn allowed_next(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            Raw => &[Inquiry],
            Inquiry => &[Engaged, Mql, Rejected, Recycled],
            Engaged => &[Mql, Rejected, Recycled],
            Mql => &[Sal, Sql, Rejected, Recycled],
            Sal => &[Sql, Opportunity, Rejected, Recycled],
            Sql => &[Opportunity, Rejected, Recycled],
            Opportunity => &[Customer, Rejected, Recycled],
            Customer => &[],
            Rejected => &[],
            Recycled => &[Engaged, Mql, Rejected],
        }
    }

    pub fn can_move_to(self, to: Stage) -> bool {
        self.allowed_next().contains(&to)
    }

    /// Checks a move along the lifecycle graph.
    pub fn transition(self, to: Stage) -> Result<Stage, TransitionError> {
        if self.can_move_to(to) {
            Ok(to)
        } else {
            Err(TransitionError {
                from: self,
                to,
                allowed: self.allowed_next().to_vec(),
            })
        }
    }

    /// The stage a lead at this stage has earned with `score`, when it moves: Engaged for a
    /// score over the engagement threshold, MQL for one over the MQL threshold with the
    /// demographic minimum met. Qualification only moves a lead forward (Inquiry and Recycled
    /// to Engaged, any of them to MQL) and never demotes it; from MQL on, sales moves it.
    pub fn earned(self, score: &ScoreSnapshot) -> Option<Stage> {
        let target = if score.is_mql() {
            Stage::Mql
        } else if score.is_engaged() {
            Stage::Engaged
        } else {
            return None;
        };
        match (self, target) {
            (Stage::Inquiry | Stage::Engaged | Stage::Recycled, Stage::Mql) => Some(Stage::Mql),
            (Stage::Inquiry | Stage::Recycled, Stage::Engaged) => Some(Stage::Engaged),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Raw => "Raw",
            Stage::Inquiry => "Inquiry",
            Stage::Engaged => "Engaged",
            Stage::Mql => "MQL",
            Stage::Sal => "SAL",
            Stage::Sql => "SQL",
            Stage::Opportunity => "Opportunity",
            Stage::Customer => "Customer",
            Stage::Rejected => "Rejected",
            Stage::Recycled => "Recycled",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?}")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use Stage::*;

    /// The graph spelled out edge by edge, independently of `allowed_next`, so a slip in either
    /// shows up as a disagreement.
    const EDGES: &[(Stage, Stage)] = &[
        (Raw, Inquiry),
        (Inquiry, Engaged),
        (Inquiry, Mql),
        (Inquiry, Rejected),
        (Inquiry, Recycled),
        (Engaged, Mql),
        (Engaged, Rejected),
        (Engaged, Recycled),
        (Mql, Sal),
        (Mql, Sql),
        (Mql, Rejected),
        (Mql, Recycled),
        (Sal, Sql),
        (Sal, Opportunity),
        (Sal, Rejected),
        (Sal, Recycled),
        (Sql, Opportunity),
        (Sql, Rejected),
        (Sql, Recycled),
        (Opportunity, Customer),
        (Opportunity, Rejected),
        (Opportunity, Recycled),
        (Recycled, Engaged),
        (Recycled, Mql),
        (Recycled, Rejected),
    ];

    fn stage() -> impl Strategy<Value = Stage> {
        proptest::sample::select(Stage::ALL.to_vec())
    }

    fn score(band: crate::scoring::ScoreBand, minimum: bool) -> ScoreSnapshot {
        use crate::scoring::{Grade, Points, Temperature};
        ScoreSnapshot {
            at: "2026-11-22T12:00:00Z".parse().unwrap(),
            score: Points::ZERO,
            behaviour: Points::ZERO,
            fit: Points::ZERO,
            grade: Grade::B,
            temperature: Temperature::Warm,
            recent_points: Points::ZERO,
            band,
            product: None,
            meets_mql_minimum: minimum,
            contributions: vec![],
            top_events: vec![],
        }
    }

    #[test]
    fn earned_stages_only_move_forward() {
        use crate::scoring::ScoreBand::{Engaged as E, Low, Mql as M};
        assert_eq!(Inquiry.earned(&score(E, false)), Some(Engaged));
        assert_eq!(Inquiry.earned(&score(M, true)), Some(Mql));
        assert_eq!(Engaged.earned(&score(M, true)), Some(Mql));
        assert_eq!(
            Engaged.earned(&score(Low, true)),
            None,
            "a cooling score never demotes"
        );
        assert_eq!(Mql.earned(&score(M, true)), None, "MQL once");
        assert_eq!(Sal.earned(&score(M, true)), None, "sales owns the lead");
        assert_eq!(Rejected.earned(&score(M, true)), None);
    }

    #[test]
    fn mql_needs_the_demographic_minimum() {
        use crate::scoring::ScoreBand;
        assert_eq!(Inquiry.earned(&score(ScoreBand::Mql, false)), Some(Engaged));
    }

    #[test]
    fn recycled_leads_qualify_again() {
        use crate::scoring::ScoreBand;
        assert_eq!(Recycled.earned(&score(ScoreBand::Mql, true)), Some(Mql));
        assert_eq!(
            Recycled.earned(&score(ScoreBand::Engaged, true)),
            Some(Engaged)
        );
    }

    #[test]
    fn an_earned_stage_is_always_an_allowed_move() {
        use crate::scoring::ScoreBand;
        for from in Stage::ALL {
            for band in [ScoreBand::Low, ScoreBand::Engaged, ScoreBand::Mql] {
                for minimum in [false, true] {
                    if let Some(to) = from.earned(&score(band, minimum)) {
                        assert!(from.can_move_to(to), "{from} -> {to}");
                    }
                }
            }
        }
    }

    #[test]
    fn rejected_and_customer_are_terminal() {
        assert!(Rejected.allowed_next().is_empty());
        assert!(Customer.allowed_next().is_empty());
    }

    #[test]
    fn error_names_allowed_targets() {
        let err = Inquiry.transition(Customer).unwrap_err();
        assert_eq!(err.allowed, vec![Engaged, Mql, Rejected, Recycled]);
        assert_eq!(
            err.to_string(),
            "a lead cannot move from Inquiry to Customer; allowed from Inquiry: Engaged, MQL, Rejected, Recycled"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    proptest! {
        #[test]
        fn no_command_sequence_leaves_the_graph(targets in proptest::collection::vec(stage(), 0..40)) {
            let edges: BTreeSet<(Stage, Stage)> = EDGES.iter().copied().collect();
            let mut current = Inquiry;
            let mut visited = vec![current];
            for to in targets {
                match current.transition(to) {
                    Ok(next) => {
                        prop_assert!(edges.contains(&(current, to)), "{current} -> {to} accepted but not an edge");
                        prop_assert_eq!(next, to);
                        current = next;
                        visited.push(current);
                    }
                    Err(e) => {
                        prop_assert!(!edges.contains(&(current, to)), "{current} -> {to} is an edge but refused");
                        let expected: Vec<Stage> = EDGES.iter().filter(|(f, _)| *f == current).map(|(_, t)| *t).collect();
                        prop_assert_eq!(e.allowed, expected);
                        prop_assert_eq!(e.from, current);
                    }
                }
            }
            // Nothing captured by a form goes back to Raw.
            prop_assert!(visited.iter().skip(1).all(|s| *s != Raw));
        }
    }
}
