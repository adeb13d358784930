//! The JSON Schemas of docs/ and a small JSON Schema (2020-12) checker for them, shared by the
//! tests that hold the schemas to the Rust types (crm_schema.rs, bus_events.rs).
//!
//! The checker knows the keywords the schemas use, nothing else: a keyword it does not know is a
//! panic, so a schema cannot promise something the tests do not check. It runs "closed" when
//! asked: a property the schema does not declare is an error even though the published schemas
//! leave objects open (receivers must ignore fields added within a version). A `$ref` may point
//! into another of the schemas by its file name (`crm-webhook.schema.json#/$defs/Assignment`),
//! as the files sit side by side in docs/.

// Each test file uses a part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::assignment::{
    AssignedTo, Assignment, AssignmentEnd, AssignmentOutcome, Person, SlaAction, SlaStepTaken,
    SlaTrack,
};
use leadflow_domain::{Email, EventEnvelope, LeadEvent, LeadId};
use serde_json::Value;

/// The payload a CRM receives for a lead: `lead.routed`, `lead.offered`.
pub const CRM_WEBHOOK: &str = "crm-webhook.schema.json";
/// The SLA notices a CRM receives.
pub const CRM_NOTICE: &str = "crm-notice.schema.json";
/// The `detail` of the events on the bus.
pub const BUS_EVENTS: &str = "bus-events.schema.json";

/// The schemas by file name.
pub struct Schemas {
    docs: BTreeMap<&'static str, Value>,
}

impl Schemas {
    pub fn load() -> Self {
        let sources = [
            (
                CRM_WEBHOOK,
                include_str!("../../../../docs/crm-webhook.schema.json"),
            ),
            (
                CRM_NOTICE,
                include_str!("../../../../docs/crm-notice.schema.json"),
            ),
            (
                BUS_EVENTS,
                include_str!("../../../../docs/bus-events.schema.json"),
            ),
        ];
        let docs = sources
            .into_iter()
            .map(|(name, text)| {
                let schema: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("docs/{name} is not JSON: {e}"));
                (name, schema)
            })
            .collect();
        Self { docs }
    }

    pub fn get(&self, name: &str) -> &Value {
        self.docs
            .get(name)
            .unwrap_or_else(|| panic!("no schema docs/{name}"))
    }

    /// A checker for values of the schema `name`.
    pub fn checker(&self, name: &'static str, closed: bool) -> Checker<'_> {
        Checker {
            schemas: self,
            root: name,
            closed,
        }
    }

    /// Every property the schema `name` declares, by location
    /// (`crm-webhook.schema.json#/$defs/Contact/properties/email`).
    pub fn declared(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        declared(self.get(name), &format!("{name}#"), &mut found);
        found
    }
}

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "title",
    "description",
    "examples",
    "default",
];
const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "format",
];

pub struct Checker<'s> {
    schemas: &'s Schemas,
    /// The file name of the schema values are checked against.
    root: &'static str,
    /// Undeclared properties are errors even where the schema leaves an object open.
    closed: bool,
}

#[derive(Default)]
pub struct Outcome {
    pub errors: Vec<String>,
    /// Schema locations (`crm-webhook.schema.json#/$defs/Contact/properties/email`) of the
    /// properties seen.
    pub seen: BTreeSet<String>,
    /// A `const` did not match: in a oneOf keyed on `type` or `kind`, the branch is another
    /// kind's, and its errors are left out of the report.
    pub const_mismatch: bool,
}

impl<'s> Checker<'s> {
    pub fn validate(&self, value: &Value) -> Outcome {
        let mut out = Outcome::default();
        let root = self.schemas.get(self.root);
        self.check(
            self.root,
            root,
            &format!("{}#", self.root),
            value,
            "$",
            &mut out,
        );
        out
    }

    /// Validates, and panics with the errors and the value if it does not match; answers the
    /// properties seen.
    pub fn assert_valid(&self, name: &str, value: &Value) -> BTreeSet<String> {
        let out = self.validate(value);
        assert!(
            out.errors.is_empty(),
            "{name} does not match docs/{}:\n  {}\n{}",
            self.root,
            out.errors.join("\n  "),
            serde_json::to_string_pretty(value).unwrap()
        );
        out.seen
    }

    /// The document and the schema a reference points to, from the document `doc`.
    fn resolve(&self, doc: &'static str, reference: &str) -> (&'static str, &'s Value, String) {
        let (file, pointer) = reference
            .split_once('#')
            .unwrap_or_else(|| panic!("a reference has a fragment: {reference}"));
        let doc = match file {
            "" => doc,
            file => [CRM_WEBHOOK, CRM_NOTICE, BUS_EVENTS]
                .into_iter()
                .find(|d| *d == file)
                .unwrap_or_else(|| panic!("{reference}: only the schemas in docs/ are known")),
        };
        let target = self
            .schemas
            .get(doc)
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} (from {doc}) points to nothing"));
        (doc, target, format!("{doc}#{pointer}"))
    }

    fn check(
        &self,
        doc: &'static str,
        schema: &'s Value,
        at: &str,
        value: &Value,
        path: &str,
        out: &mut Outcome,
    ) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                out.errors.push(format!("{path}: not allowed here ({at})"));
                return;
            }
            Value::Object(s) => s,
            _ => panic!("{at}: a schema is an object or a boolean"),
        };
        for key in s.keys() {
            assert!(
                ANNOTATIONS.contains(&key.as_str()) || KEYWORDS.contains(&key.as_str()),
                "{at}: the checker does not understand the keyword {key:?}"
            );
        }
        if let Some(r) = s.get("$ref") {
            let r = r.as_str().expect("$ref is a string");
            let (doc, target, location) = self.resolve(doc, r);
            self.check(doc, target, &location, value, path, out);
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().map(|t| t.as_str().expect("type name")).collect(),
                _ => panic!("{at}: type is a name or a list of names"),
            };
            if !types.iter().any(|t| has_type(t, value)) {
                out.errors
                    .push(format!("{path}: {value} is not of type {types:?} ({at})"));
                return;
            }
        }
        if let Some(e) = s.get("enum") {
            let e = e.as_array().expect("enum is an array");
            if !e.contains(value) {
                out.errors
                    .push(format!("{path}: {value} is not one of {e:?} ({at})"));
            }
        }
        if let Some(c) = s.get("const") {
            if c != value {
                out.const_mismatch = true;
                out.errors
                    .push(format!("{path}: {value} is not {c} ({at})"));
            }
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            let Some(branches) = s.get(keyword) else {
                continue;
            };
            let results: Vec<Outcome> = branches
                .as_array()
                .expect("a list of schemas")
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let mut o = Outcome::default();
                    self.check(doc, b, &format!("{at}/{keyword}/{i}"), value, path, &mut o);
                    o
                })
                .collect();
            let passing: Vec<&Outcome> = results.iter().filter(|o| o.errors.is_empty()).collect();
            let ok = if exactly_one {
                passing.len() == 1
            } else {
                !passing.is_empty()
            };
            if ok {
                for o in passing {
                    out.seen.extend(o.seen.iter().cloned());
                }
            } else {
                // Why each branch failed, as it says it (a wrong field inside a nullable
                // object is reported as such, next to "not null"); only the branches of the
                // value's own kind, when some are.
                let own_kind = results.iter().any(|o| !o.const_mismatch);
                let why: Vec<String> = results
                    .iter()
                    .filter(|o| !(own_kind && o.const_mismatch))
                    .flat_map(|o| o.errors.clone())
                    .collect();
                out.errors.push(format!(
                    "{path}: {} of the {keyword} branches match ({at}): [{}]",
                    passing.len(),
                    why.join("; ")
                ));
            }
        }
        match value {
            Value::Object(obj) => self.check_object(doc, s, at, obj, path, out),
            Value::Array(items) => {
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                    if items.len() as u64 > max {
                        out.errors
                            .push(format!("{path}: more than {max} items ({at})"));
                    }
                }
                if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                    if (items.len() as u64) < min {
                        out.errors
                            .push(format!("{path}: fewer than {min} items ({at})"));
                    }
                }
                if let Some(item) = s.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(
                            doc,
                            item,
                            &format!("{at}/items"),
                            v,
                            &format!("{path}[{i}]"),
                            out,
                        );
                    }
                }
            }
            Value::String(text) => {
                let len = text.chars().count() as u64;
                if s.get("minLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| len < m)
                    || s.get("maxLength")
                        .and_then(Value::as_u64)
                        .is_some_and(|m| len > m)
                {
                    out.errors
                        .push(format!("{path}: {text:?} has the wrong length ({at})"));
                }
                if let Some(format) = s.get("format").and_then(Value::as_str) {
                    if !has_format(format, text) {
                        out.errors
                            .push(format!("{path}: {text:?} is not a {format} ({at})"));
                    }
                }
            }
            Value::Number(n) => {
                let n = n.as_f64().expect("a finite number");
                if s.get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| n < m)
                    || s.get("maximum")
                        .and_then(Value::as_f64)
                        .is_some_and(|m| n > m)
                {
                    out.errors
                        .push(format!("{path}: {n} is out of range ({at})"));
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn check_object(
        &self,
        doc: &'static str,
        s: &'s serde_json::Map<String, Value>,
        at: &str,
        obj: &serde_json::Map<String, Value>,
        path: &str,
        out: &mut Outcome,
    ) {
        for name in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().expect("required names are strings");
            if !obj.contains_key(name) {
                out.errors
                    .push(format!("{path}: {name:?} is required ({at})"));
            }
        }
        let properties = s
            .get("properties")
            .map(|p| p.as_object().expect("properties is an object"));
        for (name, v) in obj {
            let here = format!("{path}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => {
                    let location = format!("{at}/properties/{name}");
                    out.seen.insert(location.clone());
                    self.check(doc, sub, &location, v, &here, out);
                }
                None => match s.get("additionalProperties") {
                    Some(extra) => self.check(
                        doc,
                        extra,
                        &format!("{at}/additionalProperties"),
                        v,
                        &here,
                        out,
                    ),
                    None if self.closed && properties.is_some() => out
                        .errors
                        .push(format!("{here}: the schema does not declare it ({at})")),
                    None => {}
                },
            }
        }
    }
}

fn has_type(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown type {other:?}"),
    }
}

fn has_format(format: &str, s: &str) -> bool {
    match format {
        "date-time" => DateTime::parse_from_rfc3339(s).is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok() && s.len() == 36,
        "uri" => url::Url::parse(s).is_ok(),
        "email" => Email::parse(s).is_ok(),
        other => panic!("the checker does not know the format {other:?}"),
    }
}

/// Every property a schema declares, by location (`<file>#/$defs/Contact/properties/email`).
fn declared(schema: &Value, at: &str, found: &mut BTreeSet<String>) {
    match schema {
        Value::Object(obj) => {
            for (key, v) in obj {
                let here = format!("{at}/{key}");
                if key == "properties" {
                    for (name, sub) in v.as_object().expect("properties is an object") {
                        let location = format!("{here}/{name}");
                        found.insert(location.clone());
                        declared(sub, &location, found);
                    }
                } else if key != "enum" && key != "const" && key != "examples" {
                    declared(v, &here, found);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                declared(v, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Asserts that every property the schema `name` declares was seen in one of the values
/// checked.
pub fn assert_all_used(schemas: &Schemas, name: &str, seen: &BTreeSet<String>) {
    let all = schemas.declared(name);
    let unused: Vec<&String> = all.difference(seen).collect();
    assert!(
        unused.is_empty(),
        "docs/{name} declares properties that no payload carries (renamed or removed in the \
         Rust types?): {unused:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The SLA events, as sla-tick announces them (built by hand, the way the ladder fills them in):
// what the notices of crm_schema.rs are made from, and examples for bus_events.rs.

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 time")
}

/// The lead the SLA events are about (the lead of the samples in events/).
pub fn sla_lead() -> LeadId {
    "01935c6e-8a4e-7c3b-9f21-3c8e2b6d4a10".parse().unwrap()
}

pub fn maria() -> Person {
    Person {
        id: "maria".into(),
        name: "Maria Vogt".into(),
        email: "maria.vogt@example.com".into(),
    }
}

pub fn anna() -> AssignedTo {
    AssignedTo::Owner {
        id: "anna".into(),
        name: "Anna Berg".into(),
        email: "anna.berg@example.com".into(),
    }
}

pub fn cem() -> AssignedTo {
    AssignedTo::Owner {
        id: "cem".into(),
        name: "Cem Arslan".into(),
        email: "cem.arslan@example.com".into(),
    }
}

pub fn alpen_it() -> AssignedTo {
    AssignedTo::Partner {
        id: "reseller-at".into(),
        name: "Alpen IT GmbH".into(),
    }
}

pub fn donau_it() -> AssignedTo {
    AssignedTo::Partner {
        id: "donau-it".into(),
        name: "Donau Systems GmbH".into(),
    }
}

/// An assignment made at `routed`, delivered two seconds later, with the steps of its ladder
/// taken (each half a minute after it was due; the first due at the deadline) and the next one
/// due at `next_due`.
pub fn assignment(
    to: AssignedTo,
    pool: &str,
    team: &str,
    hot: bool,
    routed: DateTime<Utc>,
    steps: &[(SlaAction, DateTime<Utc>)],
    next_due: Option<DateTime<Utc>>,
) -> Assignment {
    let steps: Vec<SlaStepTaken> = steps
        .iter()
        .enumerate()
        .map(|(i, (action, due))| SlaStepTaken {
            step: i as u32,
            action: *action,
            due: *due,
            at: *due + Duration::seconds(29),
        })
        .collect();
    Assignment {
        assigned_to: to,
        pool: pool.into(),
        rule: Some(pool.into()),
        fast_track: false,
        config_version: 3,
        at: routed,
        sla_deadline: steps
            .first()
            .map_or_else(|| next_due.unwrap_or(routed), |s| s.due),
        accepted_at: None,
        sla: Some(SlaTrack {
            team: Some(team.into()),
            hot,
            steps_taken: steps.len() as u32,
            next_due,
            steps,
        }),
        delivered_at: Some(routed + Duration::seconds(2)),
        outcome: None,
    }
}

/// Ends an assignment at `end`, with the waits (the working time is the raw time here).
pub fn ended(mut a: Assignment, end: AssignmentEnd, when: DateTime<Utc>) -> Assignment {
    let waited = (when - a.at).num_seconds();
    let system = a.delivered_at.map(|d| (d - a.at).num_seconds());
    a.outcome = Some(AssignmentOutcome {
        end,
        at: when,
        waited_seconds: waited,
        waited_working_seconds: waited,
        system_seconds: system,
        person_seconds: system.map(|s| waited - s),
    });
    if let Some(t) = a.sla.as_mut() {
        t.next_due = None;
    }
    a
}

fn envelope(when: &str, event: LeadEvent) -> EventEnvelope {
    EventEnvelope::new(sla_lead(), at(when), event)
}

/// The second step of the normal ladder: remind Anna, with her manager in copy.
pub fn reminder() -> EventEnvelope {
    let routed = at("2026-11-19T09:20:01Z");
    let due = at("2026-11-24T09:20:01Z");
    let a = assignment(
        anna(),
        "dach-crm",
        "dach-sales",
        false,
        routed,
        &[
            (SlaAction::RemindOwner, at("2026-11-23T09:20:01Z")),
            (SlaAction::RemindWithManager, due),
        ],
        Some(at("2026-11-25T09:20:01Z")),
    );
    envelope(
        "2026-11-24T09:20:30Z",
        LeadEvent::SlaReminderDue {
            step: 1,
            action: SlaAction::RemindWithManager,
            due,
            assignment: a,
            cc: Some(maria()),
        },
    )
}

/// The second step of the hot ladder: Maria is told that Anna has not accepted.
pub fn escalation() -> EventEnvelope {
    let routed = at("2026-11-23T09:20:01Z");
    let due = at("2026-11-23T10:20:01Z");
    let a = assignment(
        anna(),
        "dach-crm",
        "dach-sales",
        true,
        routed,
        &[
            (SlaAction::RemindOwner, at("2026-11-23T09:35:01Z")),
            (SlaAction::EscalateToManager, due),
        ],
        Some(at("2026-11-23T11:20:01Z")),
    );
    envelope(
        "2026-11-23T10:20:30Z",
        LeadEvent::SlaEscalated {
            step: 1,
            due,
            assignment: a,
            manager: maria(),
        },
    )
}

/// The last step of the hot ladder: the lead goes from Anna to Cem.
pub fn reassignment() -> EventEnvelope {
    let routed = at("2026-11-23T09:20:01Z");
    let now = at("2026-11-23T11:20:30Z");
    let from = assignment(
        anna(),
        "dach-crm",
        "dach-sales",
        true,
        routed,
        &[
            (SlaAction::RemindOwner, at("2026-11-23T09:35:01Z")),
            (SlaAction::EscalateToManager, at("2026-11-23T10:20:01Z")),
            (SlaAction::Reassign, at("2026-11-23T11:20:01Z")),
        ],
        None,
    );
    let mut to = assignment(
        cem(),
        "dach-crm",
        "dach-sales",
        true,
        now,
        &[],
        Some(now + Duration::minutes(15)),
    );
    to.delivered_at = None;
    envelope(
        "2026-11-23T11:20:30Z",
        LeadEvent::LeadReassigned {
            from: ended(from, AssignmentEnd::Reassigned, now),
            to,
            step: Some(2),
        },
    )
}

/// Alpen IT let its offer run out (`declined`: it said no): Donau IT has it now.
pub fn offer_expired(declined: bool) -> EventEnvelope {
    let offered = at("2026-11-23T10:00:00Z");
    let due = at("2026-11-25T10:00:00Z");
    let now = at("2026-11-25T10:00:30Z");
    let offer = assignment(
        alpen_it(),
        "austria-partner",
        "partners",
        false,
        offered,
        &[(SlaAction::ExpireOffer, due)],
        None,
    );
    let end = if declined {
        AssignmentEnd::Declined
    } else {
        AssignmentEnd::OfferExpired
    };
    let mut next = assignment(
        donau_it(),
        "austria-partner",
        "partners",
        false,
        now,
        &[],
        Some(at("2026-11-27T10:00:30Z")),
    );
    next.delivered_at = None;
    envelope(
        "2026-11-25T10:00:30Z",
        LeadEvent::PartnerOfferExpired {
            offer: ended(offer, end, now),
            next: Some(next),
        },
    )
}
