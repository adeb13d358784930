//! BANT: Budget, Authority, Need, Time, filled in by inside sales; a sales-qualified lead needs it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fields::FieldErrors;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Whole units of the currency, as sales talks about budgets.
    pub amount: u64,
    /// ISO 4217, upper case.
    pub currency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    DecisionMaker,
    Influencer,
    User,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timeframe {
    Now,
    ThisQuarter,
    NextQuarter,
    ThisYear,
    Later,
    Unknown,
}

/// What inside sales learnt, with who and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Authority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeframe: Option<Timeframe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Bant {
    /// Is every part known? (docs/domain.md: an SQL needs BANT.)
    pub fn is_complete(&self) -> bool {
        self.budget.is_some()
            && self.authority.is_some_and(|a| a != Authority::Unknown)
            && self.need.is_some()
            && self.timeframe.is_some_and(|t| t != Timeframe::Unknown)
    }

    /// Validates a `PATCH /leads/{id}/qualification` body, merged over what was known:
    /// a field left out keeps its value, `null` clears it.
    pub fn patch(
        previous: Option<&Bant>,
        body: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<Bant, FieldErrors> {
        let mut errors = FieldErrors::new();
        let Some(obj) = body.as_object() else {
            errors.insert("body".into(), "must be a JSON object".into());
            return Err(errors);
        };
        for key in obj.keys().filter(|k| {
            !["budget", "authority", "need", "timeframe", "notes", "by"].contains(&k.as_str())
        }) {
            errors.insert(key.clone(), "unknown field".into());
        }
        let mut next = previous.cloned().unwrap_or(Bant {
            budget: None,
            authority: None,
            need: None,
            timeframe: None,
            notes: None,
            by: String::new(),
            at,
        });
        match obj.get("by").and_then(|v| v.as_str()).map(str::trim) {
            Some(by) if !by.is_empty() && by.len() <= 128 && !by.chars().any(char::is_control) => {
                next.by = by.to_owned()
            }
            _ => {
                errors.insert(
                    "by".into(),
                    "is required: the id of the person who qualified the lead".into(),
                );
            }
        }
        if let Some(v) = obj.get("budget") {
            next.budget = match v {
                serde_json::Value::Null => None,
                v => {
                    let amount = v.get("amount").and_then(|a| a.as_u64());
                    let currency = v
                        .get("currency")
                        .and_then(|c| c.as_str())
                        .map(str::to_ascii_uppercase);
                    match (amount, currency) {
                        (Some(amount), Some(c))
                            if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) =>
                        {
                            Some(Budget {
                                amount,
                                currency: c,
                            })
                        }
                        _ => {
                            errors.insert(
                                "budget".into(),
                                "must be {\"amount\": whole non-negative number, \"currency\": ISO 4217 code such as EUR}".into(),
                            );
                            None
                        }
                    }
                }
            };
        }
        fn choice<T: serde::de::DeserializeOwned>(
            v: &serde_json::Value,
            name: &str,
            allowed: &str,
            errors: &mut FieldErrors,
        ) -> Option<T> {
            if v.is_null() {
                return None;
            }
            serde_json::from_value(v.clone())
                .map_err(|_| errors.insert(name.into(), format!("must be one of {allowed}")))
                .ok()
        }
        if let Some(v) = obj.get("authority") {
            next.authority = choice(
                v,
                "authority",
                "decision_maker, influencer, user, unknown",
                &mut errors,
            );
        }
        if let Some(v) = obj.get("timeframe") {
            next.timeframe = choice(
                v,
                "timeframe",
                "now, this_quarter, next_quarter, this_year, later, unknown",
                &mut errors,
            );
        }
        let text = |name: &str, max: usize, errors: &mut FieldErrors| -> Option<Option<String>> {
            let v = obj.get(name)?;
            match v {
                serde_json::Value::Null => Some(None),
                serde_json::Value::String(s) if s.trim().chars().count() <= max => {
                    Some(Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
                }
                _ => {
                    errors.insert(
                        name.into(),
                        format!("must be a text of at most {max} characters"),
                    );
                    Some(None)
                }
            }
        };
        if let Some(need) = text("need", 500, &mut errors) {
            next.need = need;
        }
        if let Some(notes) = text("notes", 2000, &mut errors) {
            next.notes = notes;
        }
        next.at = at;
        if errors.is_empty() {
            Ok(next)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_full_patch_and_a_partial_one() {
        let b = Bant::patch(None, &json!({"budget": {"amount": 50000, "currency": "eur"}, "authority": "decision_maker", "need": "CRM for 40 reps", "timeframe": "this_quarter", "by": "rep-7"}), at()).unwrap();
        assert!(b.is_complete());
        assert_eq!(b.budget.as_ref().unwrap().currency, "EUR");
        let b2 = Bant::patch(
            Some(&b),
            &json!({"timeframe": "later", "budget": null, "by": "rep-8"}),
            at(),
        )
        .unwrap();
        assert_eq!(b2.timeframe, Some(Timeframe::Later));
        assert_eq!(b2.budget, None, "null clears");
        assert_eq!(b2.need.as_deref(), Some("CRM for 40 reps"), "absent keeps");
        assert_eq!(b2.by, "rep-8");
    }

    #[test]
    fn every_problem_is_named() {
        let errs = Bant::patch(None, &json!({"budget": {"amount": -5, "currency": "euro"}, "authority": "boss", "timeframe": 3, "need": 7, "colour": "red"}), at()).unwrap_err();
        let names: Vec<_> = errs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["authority", "budget", "by", "colour", "need", "timeframe"]
        );
    }
}
