//! Who set a lead's fields, and whose word wins (docs/data-model.md, "Field precedence"):
//! CRM > sales > confirmed form > form. A public form is the lowest source: it fills what is
//! empty and may only *propose* a different value for a field that already has one, so an
//! anonymous submission cannot rewrite what sales, a CRM or the person (confirmed) has set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a field's value came from, from least to most trusted (the order is the precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldSource {
    /// A public form or API client: anyone who knows the e-mail address.
    Form,
    /// A submission the person confirmed (double opt-in); nothing sets this level yet, the
    /// privacy work will.
    ConfirmedForm,
    /// A sales user through the sales API.
    Sales,
    /// The CRM, which is the system of record once a lead is handed over.
    Crm,
}

impl FieldSource {
    /// Whether a value from `self` may replace a different, non-empty value that `holder` set.
    /// A higher source wins; an equal one corrects its own value, except a plain form, which
    /// never overwrites (anyone may send it).
    pub fn may_overwrite(self, holder: FieldSource) -> bool {
        self > holder || (self == holder && self != FieldSource::Form)
    }
}

/// What happens to one field when a source offers a value for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldWrite {
    /// The field had this value already (its source may rise; see [`Provenance::settle`]).
    Unchanged,
    /// The field was empty and takes the value.
    Filled,
    /// The source outranks the holder: the value replaces the old one.
    Overwritten,
    /// The holder outranks the source: the field keeps its value, the offer is only recorded.
    Proposed,
}

impl FieldWrite {
    /// Whether the lead's field takes the offered value.
    pub fn applies(self) -> bool {
        matches!(self, FieldWrite::Filled | FieldWrite::Overwritten)
    }
}

/// The decision for one field: pure, so every writer decides alike.
pub fn decide(
    current: Option<&str>,
    holder: FieldSource,
    offered: &str,
    source: FieldSource,
) -> FieldWrite {
    match current {
        None => FieldWrite::Filled,
        Some(c) if c == offered => FieldWrite::Unchanged,
        Some(_) if source.may_overwrite(holder) => FieldWrite::Overwritten,
        Some(_) => FieldWrite::Proposed,
    }
}

/// The source of each of a lead's fields (standard fields by name, custom fields as
/// `custom_fields.<name>`). Only fields set above plain form are listed, so a lead stored
/// before provenance existed reads as all-form, and the lead item grows by a few bytes only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Provenance(BTreeMap<String, FieldSource>);

impl Provenance {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Who set `field` (form when nobody above form did).
    pub fn of(&self, field: &str) -> FieldSource {
        self.0.get(field).copied().unwrap_or(FieldSource::Form)
    }

    /// Decides `source`'s offer for `field`, whose value is `current`.
    pub fn decide(
        &self,
        field: &str,
        current: Option<&str>,
        offered: &str,
        source: FieldSource,
    ) -> FieldWrite {
        decide(current, self.of(field), offered, source)
    }

    /// Records the outcome of a decision: an applied value is `source`'s from now on; the same
    /// value confirmed by a higher source rises to that source.
    pub fn settle(&mut self, field: &str, write: FieldWrite, source: FieldSource) {
        let rises = write == FieldWrite::Unchanged && source > self.of(field);
        if write.applies() || rises {
            if source == FieldSource::Form {
                self.0.remove(field);
            } else {
                self.0.insert(field.to_owned(), source);
            }
        }
    }

    /// Forgets a field that no longer exists on the lead.
    pub fn forget(&mut self, field: &str) {
        self.0.remove(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use FieldSource::*;

    const ALL: [FieldSource; 4] = [Form, ConfirmedForm, Sales, Crm];

    #[test]
    fn the_precedence_is_crm_sales_confirmed_form() {
        assert!(Crm > Sales && Sales > ConfirmedForm && ConfirmedForm > Form);
        assert!(Crm.may_overwrite(Sales));
        assert!(Sales.may_overwrite(ConfirmedForm));
        assert!(ConfirmedForm.may_overwrite(Form));
        assert!(Sales.may_overwrite(Sales), "sales corrects its own value");
        assert!(
            !Form.may_overwrite(Form),
            "an anonymous form never overwrites"
        );
        assert!(!Form.may_overwrite(Sales));
        assert!(!Sales.may_overwrite(Crm));
    }

    #[test]
    fn a_form_fills_what_is_empty_and_proposes_the_rest() {
        let p = Provenance::default();
        assert_eq!(p.decide("phone", None, "+49 1", Form), FieldWrite::Filled);
        assert_eq!(
            p.decide("phone", Some("+49 1"), "+49 1", Form),
            FieldWrite::Unchanged
        );
        assert_eq!(
            p.decide("phone", Some("+49 1"), "+49 2", Form),
            FieldWrite::Proposed
        );
    }

    #[test]
    fn settling_records_only_sources_above_form() {
        let mut p = Provenance::default();
        p.settle("company", FieldWrite::Filled, Form);
        assert!(p.is_empty(), "form is the default, not stored");
        p.settle("company", FieldWrite::Overwritten, Sales);
        assert_eq!(p.of("company"), Sales);
        p.settle("company", FieldWrite::Proposed, Form);
        assert_eq!(p.of("company"), Sales, "a proposal changes nothing");
        p.settle("company", FieldWrite::Unchanged, Crm);
        assert_eq!(p.of("company"), Crm, "the CRM confirming a value owns it");
        p.settle("company", FieldWrite::Unchanged, Sales);
        assert_eq!(p.of("company"), Crm, "confirming never lowers");
    }

    #[test]
    fn stored_provenance_is_a_plain_map_and_old_leads_read_as_form() {
        let mut p = Provenance::default();
        p.settle("phone", FieldWrite::Filled, ConfirmedForm);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json, serde_json::json!({"phone": "confirmed_form"}));
        let back: Provenance = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        assert_eq!(Provenance::default().of("anything"), Form);
    }

    fn source() -> impl Strategy<Value = FieldSource> {
        proptest::sample::select(ALL.to_vec())
    }

    proptest! {
        /// Whatever a plain form offers, in any order, a field set by a higher source keeps
        /// its value and its source.
        #[test]
        fn no_form_sequence_moves_a_field_set_above_form(
            holder in source().prop_filter("above form", |s| *s > Form),
            offers in proptest::collection::vec("[a-z]{0,3}", 0..20),
        ) {
            let mut p = Provenance::default();
            let mut value = "set".to_owned();
            p.settle("f", FieldWrite::Overwritten, holder);
            for offer in offers {
                let w = p.decide("f", Some(&value), &offer, Form);
                if w.applies() {
                    value = offer;
                }
                p.settle("f", w, Form);
            }
            prop_assert_eq!(value, "set");
            prop_assert_eq!(p.of("f"), holder);
        }

        /// A value changes only to one from a source at least as high as its holder, and never
        /// from a plain form.
        #[test]
        fn a_write_applies_only_upwards(holder in source(), by in source(), current in proptest::option::of("[ab]"), offered in "[ab]") {
            let w = decide(current.as_deref(), holder, &offered, by);
            if current.is_some() && w.applies() {
                prop_assert!(by >= holder && by != Form);
            }
            if current.is_none() {
                prop_assert_eq!(w, FieldWrite::Filled);
            }
        }
    }
}
