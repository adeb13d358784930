use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The lifecycle stage of a lead: the shared language of marketing and sales (DOMAIN.md).
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

    /// The stages this one may move to. The loop of DOMAIN.md: sales hands leads back to
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
