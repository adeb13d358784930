//! docs/crm-webhook.schema.json describes exactly what a CRM receives: payloads built through the
//! public API (a captured lead, scored events, BANT, an assignment) are checked against it with a
//! small JSON Schema checker. The checker runs "closed": a property the schema does not declare
//! is an error even though the published schema leaves objects open (receivers must ignore
//! fields added within a version). And every property the schema declares must turn up in one of
//! the payloads. So renaming, adding or removing a field in the Rust types fails here until the
//! schema says the same.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::assignment::{AssignedTo, Assignment};
use leadflow_domain::bant::Bant;
use leadflow_domain::crm::{
    webhook_id, Activity, LeadContext, LeadRoutedPayload, ACTIVITIES_SENT, LEAD_ROUTED,
    PAYLOAD_VERSION,
};
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::lead_score::LeadScore;
use leadflow_domain::scoring::{ScoreState, ScoringModel};
use leadflow_domain::webhook::WebhookSecret;
use leadflow_domain::{Email, Lead, LeadId, Stage, SubmissionRules, TrackedEvent};
use serde_json::{json, Value};

const SCHEMA: &str = include_str!("../../../docs/crm-webhook.schema.json");
const GUIDE: &str = include_str!("../../../docs/crm.md");

// ---------------------------------------------------------------------------------------------
// A small JSON Schema (2020-12) checker: the keywords the schema uses, nothing else. A keyword it
// does not know is a panic, so the schema cannot promise something this test does not check.

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

struct Checker<'s> {
    root: &'s Value,
    /// Undeclared properties are errors even where the schema leaves an object open.
    closed: bool,
}

#[derive(Default)]
struct Outcome {
    errors: Vec<String>,
    /// Schema locations (`#/$defs/Contact/properties/email`) of the properties seen.
    seen: BTreeSet<String>,
}

impl<'s> Checker<'s> {
    fn new(root: &'s Value, closed: bool) -> Self {
        Self { root, closed }
    }

    fn validate(&self, value: &Value) -> Outcome {
        let mut out = Outcome::default();
        self.check(self.root, "#", value, "$", &mut out);
        out
    }

    fn resolve(&self, reference: &str) -> &'s Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are supported: {reference}"));
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} points to nothing"))
    }

    fn check(&self, schema: &'s Value, at: &str, value: &Value, path: &str, out: &mut Outcome) {
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
            self.check(self.resolve(r), r, value, path, out);
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
                    self.check(b, &format!("{at}/{keyword}/{i}"), value, path, &mut o);
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
                let why: Vec<String> = results.iter().flat_map(|o| o.errors.clone()).collect();
                out.errors.push(format!(
                    "{path}: {} of the {keyword} branches match ({at}): {why:?}",
                    passing.len()
                ));
            }
        }
        match value {
            Value::Object(obj) => self.check_object(s, at, obj, path, out),
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
                    self.check(sub, &location, v, &here, out);
                }
                None => match s.get("additionalProperties") {
                    Some(extra) => {
                        self.check(extra, &format!("{at}/additionalProperties"), v, &here, out)
                    }
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

/// Every property the schema declares, by location (`#/$defs/Contact/properties/email`).
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

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("docs/crm-webhook.schema.json is JSON")
}

fn assert_valid(checker: &Checker<'_>, name: &str, value: &Value) -> BTreeSet<String> {
    let out = checker.validate(value);
    assert!(
        out.errors.is_empty(),
        "{name} does not match docs/crm-webhook.schema.json:\n  {}\n{}",
        out.errors.join("\n  "),
        serde_json::to_string_pretty(value).unwrap()
    );
    out.seen
}

// ---------------------------------------------------------------------------------------------
// Payloads, built the way crm-webhook builds them.

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 time")
}

fn capture(pairs: &[(&str, &str)], ctx: SubmissionContext, when: DateTime<Utc>) -> Lead {
    let raw = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let submission = SubmissionRules::default()
        .validate(&raw)
        .expect("a valid submission");
    Lead::capture(LeadId::new_at(when), submission, &ctx, when).lead
}

fn to_mql(lead: &mut Lead) {
    for next in [Stage::Engaged, Stage::Mql] {
        lead.stage = lead.stage.transition(next).expect("an allowed move");
    }
}

/// Scores the events (as the client sent them to `POST /events`) in the given order, the way
/// score-event does: the activities with what each counted for, and the state.
fn score(
    model: &ScoringModel,
    lead: &Lead,
    events: &[Value],
    now: DateTime<Utc>,
) -> (ScoreState, Vec<Activity>) {
    let mut state = ScoreState::default();
    let mut activities = Vec::new();
    for e in events {
        let mut e = e.clone();
        e["lead_id"] = json!(lead.id);
        let event = TrackedEvent::parse(&e, now).expect("a valid tracked event");
        let applied = state.apply(model, &event.behaviour());
        activities.push(Activity {
            event,
            applied: serde_json::to_value(&applied).unwrap(),
        });
    }
    (state, activities)
}

fn payload(context: LeadContext, routed_at: DateTime<Utc>) -> Value {
    let payload = LeadRoutedPayload {
        kind: LEAD_ROUTED.into(),
        version: PAYLOAD_VERSION,
        timestamp: routed_at,
        data: context,
    };
    // The bytes crm-webhook sends, read back.
    let body = serde_json::to_vec(&payload).unwrap();
    serde_json::from_slice(&body).unwrap()
}

const API_URL: &str = "https://abc123.execute-api.eu-central-1.amazonaws.com/";

/// A well-known lead: every field filled in, scored events (counted, replaced, capped), BANT,
/// consent, routed to an owner by a rule.
fn full() -> Value {
    let captured = at("2026-11-20T09:14:03Z");
    let routed = at("2026-11-22T10:21:05Z");
    let mut lead = capture(
        &[
            ("email", "Jonas.Becker@Example.de"),
            ("first_name", "Jonas"),
            ("last_name", "Becker"),
            ("company", "Beispiel GmbH"),
            ("phone", "+49 30 1234567"),
            ("country", "de"),
            ("postcode", "10115"),
            ("job_title", "Head of Sales"),
            ("company_size", "51-200"),
            ("industry", "software"),
            ("source", "webinar"),
            ("campaign", "crm-launch-q4"),
            ("utm_source", "google"),
            ("utm_medium", "cpc"),
            ("utm_campaign", "crm-q4"),
            ("utm_term", "crm software"),
            ("utm_content", "ad-b"),
            ("landing_page_url", "https://www.example.com/lp/crm"),
            ("visitor_id", "v-3c9d1e"),
            ("custom_fields.seats", "25"),
            ("custom_fields[current_tool]", "spreadsheets"),
            ("consent", "on"),
            ("consent_text", "Yes, send me product news by e-mail."),
            ("consent_version", "2026-10"),
        ],
        SubmissionContext {
            ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        },
        captured,
    );
    to_mql(&mut lead);
    lead.bant = Some(
        Bant::patch(
            None,
            &json!({"budget": {"amount": 40000, "currency": "EUR"}, "authority": "decision_maker",
                    "need": "CRM for 30 reps", "timeframe": "this_quarter",
                    "notes": "Replaces spreadsheets in Q1.", "by": "rep-anna"}),
            at("2026-11-21T15:30:00Z"),
        )
        .unwrap(),
    );
    let page = |id: &str, when: &str, url: &str, tags: &[&str]| json!({"event_id": id, "type": "page_view", "occurred_at": when, "url": url, "tags": tags});
    let events = [
        page(
            "ev-0001",
            "2026-11-20T09:02:11Z",
            "https://www.example.com/products/crm",
            &["crm"],
        ),
        page(
            "ev-0002",
            "2026-11-20T09:05:40Z",
            "https://www.example.com/blog/lead-scoring",
            &[],
        ),
        json!({"event_id": "ev-0003", "type": "webinar_attended", "occurred_at": "2026-11-21T16:00:00Z",
               "url": "https://www.example.com/webinars/crm-basics", "tags": ["crm", "webinar"]}),
        page(
            "ev-0004",
            "2026-11-22T10:01:00Z",
            "https://www.example.com/pricing",
            &[],
        ),
        page(
            "ev-0005",
            "2026-11-22T10:03:00Z",
            "https://www.example.com/pricing",
            &[],
        ),
        page(
            "ev-0006",
            "2026-11-22T10:05:00Z",
            "https://www.example.com/pricing",
            &[],
        ),
        // The pricing-page cap (3 a day) is full: this one counts in place of ev-0004.
        page(
            "ev-0007",
            "2026-11-22T10:07:00Z",
            "https://www.example.com/pricing?plan=team",
            &[],
        ),
        json!({"event_id": "ev-0008", "type": "download", "occurred_at": "2026-11-22T10:20:00Z",
               "url": "https://www.example.com/whitepaper/crm.pdf", "tags": ["crm", "whitepaper"]}),
        // Arrives late: earlier than the three pricing views that count, so capped.
        page(
            "ev-0009",
            "2026-11-22T09:58:00Z",
            "https://www.example.com/pricing",
            &[],
        ),
    ];
    let model = ScoringModel::example();
    let (state, activities) = score(&model, &lead, &events, routed);
    let snapshot = state.snapshot(&model, &lead.fit_profile(), routed);
    assert!(
        snapshot.is_mql(),
        "the example lead is an MQL: {snapshot:?}"
    );
    let interests = state.interests(&model, routed);
    let mut score = LeadScore::new(lead.id, captured);
    score.snapshot = Some(snapshot);
    score.state = state;
    score.config_version = 3;
    score.updated_at = routed;
    score.version = 9;
    let assignment = Assignment {
        assigned_to: AssignedTo::Owner {
            id: "cem".into(),
            name: "Cem Arslan".into(),
            email: "cem.arslan@example.com".into(),
        },
        pool: "dach-crm".into(),
        rule: Some("dach-crm".into()),
        fast_track: false,
        config_version: 3,
        at: routed,
        sla_deadline: routed + Duration::hours(24),
        accepted_at: None,
    };
    lead.assignment = Some(assignment.clone());
    let context = LeadContext::build(
        &lead,
        &assignment,
        Some(&score),
        &interests,
        &activities,
        Some(API_URL),
    );
    payload(context, routed)
}

/// A lead that gave only an e-mail, unscored, offered to a partner by the default pool.
fn bare() -> Value {
    let captured = at("2026-11-22T08:00:00Z");
    let mut lead = capture(
        &[("email", "info@example.at")],
        SubmissionContext::default(),
        captured,
    );
    to_mql(&mut lead);
    let assignment = Assignment {
        assigned_to: AssignedTo::Partner {
            id: "reseller-at".into(),
            name: "Alpen IT GmbH".into(),
        },
        pool: "austria-partner".into(),
        rule: None,
        fast_track: false,
        config_version: 1,
        at: captured,
        sla_deadline: captured + Duration::hours(48),
        accepted_at: None,
    };
    let context = LeadContext::build(&lead, &assignment, None, &BTreeMap::new(), &[], None);
    payload(context, captured)
}

/// A lead in a manager's queue, delivered again after it was accepted: a score record without
/// a snapshot, consent refused, an activity whose scoring is not known.
fn queued_and_accepted() -> Value {
    let captured = at("2026-11-18T13:00:00Z");
    let routed = at("2026-11-19T07:45:00Z");
    let mut lead = capture(
        &[
            ("email", "k.meier@example.ch"),
            ("company", "Meier AG"),
            ("country", "CH"),
            ("consent", "off"),
        ],
        SubmissionContext::default(),
        captured,
    );
    to_mql(&mut lead);
    let model = ScoringModel::example();
    let (_, mut activities) = score(
        &model,
        &lead,
        &[
            json!({"event_id": "ev-0100", "type": "email_open", "occurred_at": "2026-11-18T14:00:00Z"}),
        ],
        routed,
    );
    activities[0].applied = Value::Null;
    let assignment = Assignment {
        assigned_to: AssignedTo::ManagerQueue {
            id: "maria".into(),
            name: "Maria Vogt".into(),
            email: "maria.vogt@example.com".into(),
        },
        pool: "enterprise".into(),
        rule: Some("enterprise-a-leads".into()),
        fast_track: false,
        config_version: 2,
        at: routed,
        sla_deadline: routed + Duration::hours(48),
        accepted_at: Some(routed + Duration::hours(3)),
    };
    let context = LeadContext::build(
        &lead,
        &assignment,
        Some(&LeadScore::new(lead.id, captured)),
        &BTreeMap::from([("crm".to_owned(), 0.004), ("security".to_owned(), 0.8)]),
        &activities,
        Some(API_URL),
    );
    payload(context, routed)
}

/// The example payload of docs/crm.md: the first ```json block after `<!-- lead.routed example -->`.
fn guide_example() -> Value {
    let (_, rest) = GUIDE
        .split_once("<!-- lead.routed example -->")
        .expect("docs/crm.md marks its example payload with <!-- lead.routed example -->");
    let (_, block) = rest
        .split_once("```json\n")
        .expect("a ```json block follows the marker");
    let (json, _) = block.split_once("\n```").expect("the block ends");
    serde_json::from_str(json).expect("the example in docs/crm.md is JSON")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn delivered_payloads_match_the_schema_and_use_all_of_it() {
    let schema = schema();
    let closed = Checker::new(&schema, true);
    let mut seen = BTreeSet::new();
    for (name, value) in [
        ("the full payload", full()),
        ("the bare payload", bare()),
        ("the queued and accepted payload", queued_and_accepted()),
        ("the example of docs/crm.md", guide_example()),
    ] {
        seen.extend(assert_valid(&closed, name, &value));
    }
    let mut all = BTreeSet::new();
    declared(&schema, "#", &mut all);
    let unused: Vec<&String> = all.difference(&seen).collect();
    assert!(
        unused.is_empty(),
        "the schema declares properties that no payload carries (renamed or removed in the Rust \
         types?): {unused:#?}"
    );
}

#[test]
fn the_payloads_say_what_the_guide_says() {
    let full = full();
    let data = &full["data"];
    assert_eq!(full["type"], "lead.routed");
    assert_eq!(full["version"], 1);
    assert_eq!(data["contact"]["email"], "jonas.becker@example.de");
    assert_eq!(data["company"]["country"], "DE");
    assert_eq!(
        data["links"]["callback"],
        "https://abc123.execute-api.eu-central-1.amazonaws.com/crm/events"
    );
    let activities = data["activities"].as_array().unwrap();
    let times: Vec<&str> = activities
        .iter()
        .map(|a| a["occurred_at"].as_str().unwrap())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first, "activities are newest first");
    assert!(activities.len() <= ACTIVITIES_SENT);
    let outcomes: BTreeSet<&str> = activities
        .iter()
        .flat_map(|a| a["scored"]["rules"].as_array().into_iter().flatten())
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, BTreeSet::from(["capped", "counted", "replaced"]));
    let bare = bare();
    for field in ["score", "consent", "bant"] {
        assert!(
            bare["data"][field].is_null(),
            "{field} is null, not left out"
        );
    }
    assert_eq!(
        bare["data"]["links"],
        json!({"lead": null, "callback": null})
    );
    assert!(
        bare["data"]["assignment"].get("rule").is_none(),
        "no rule: left out"
    );
    assert_eq!(bare["data"]["attribution"]["utm"], json!({}));
    let queued = queued_and_accepted();
    assert!(
        queued["data"]["score"].is_null(),
        "a score record without a snapshot"
    );
    assert_eq!(
        queued["data"]["interests"],
        json!([{"tag": "security", "weight": 0.8}]),
        "faded interests are left out"
    );

    let schema = schema();
    assert_eq!(schema["properties"]["type"]["const"], LEAD_ROUTED);
    assert_eq!(schema["properties"]["version"]["const"], PAYLOAD_VERSION);
    assert_eq!(
        schema["$defs"]["LeadContext"]["properties"]["activities"]["maxItems"],
        ACTIVITIES_SENT
    );
}

#[test]
fn the_guide_keeps_a_changelog_entry_for_the_version_sent() {
    let changelog = GUIDE
        .split("## Payload versions")
        .nth(1)
        .expect("docs/crm.md has a \"Payload versions\" section");
    let changelog = changelog.split("\n## ").next().unwrap_or_default();
    assert!(
        changelog.contains(&format!("### Version {PAYLOAD_VERSION}\n")),
        "docs/crm.md, Payload versions: no entry for version {PAYLOAD_VERSION}"
    );
    // One name for one thing: the activities name their event type as the top events do.
    let full = full();
    let activity = &full["data"]["activities"][0];
    let top = &full["data"]["score"]["top_events"][0];
    assert!(activity["event_type"].is_string() && top["event_type"].is_string());
    assert!(activity.get("type").is_none());
}

#[test]
fn the_checker_catches_what_it_should() {
    let schema = schema();
    let closed = Checker::new(&schema, true);
    let open = Checker::new(&schema, false);
    let good = full();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 9] = [
        (
            "a renamed field",
            |v| {
                let email = v["data"]["contact"]
                    .as_object_mut()
                    .unwrap()
                    .remove("email")
                    .unwrap();
                v["data"]["contact"]["e_mail"] = email;
            },
            "\"email\" is required",
        ),
        (
            "an added field",
            |v| v["data"]["assignment"]["team"] = json!("dach"),
            "$.data.assignment.team: the schema does not declare it",
        ),
        (
            "an added field in an array item",
            |v| v["data"]["interests"][0]["decayed"] = json!(true),
            "$.data.interests[0].decayed: the schema does not declare it",
        ),
        (
            "a stage that does not exist",
            |v| v["data"]["stage"] = json!("Lead"),
            "is not one of",
        ),
        (
            "null for a string",
            |v| v["data"]["contact"]["email"] = Value::Null,
            "is not of type",
        ),
        (
            "a time that is not RFC 3339",
            |v| v["timestamp"] = json!("22.11.2026 10:21"),
            "is not a date-time",
        ),
        (
            "an owner without an e-mail",
            |v| {
                v["data"]["assignment"]["assigned_to"]
                    .as_object_mut()
                    .unwrap()
                    .remove("email");
            },
            "0 of the oneOf branches match",
        ),
        (
            "a score that is not an object",
            |v| v["data"]["score"] = json!(71),
            "0 of the anyOf branches match",
        ),
        (
            "another payload version",
            |v| v["version"] = json!(2),
            "is not 1",
        ),
    ];
    for (name, edit, says) in cases {
        let mut bad = good.clone();
        edit(&mut bad);
        let errors = closed.validate(&bad).errors;
        assert!(
            errors.iter().any(|e| e.contains(says)),
            "{name}: expected an error containing {says:?}, got {errors:#?}"
        );
    }
    // The published schema is open: a receiver validating with it accepts a field added
    // within version 1.
    let mut added = good.clone();
    added["data"]["assignment"]["team"] = json!("dach");
    assert!(open.validate(&added).errors.is_empty());
}

#[test]
fn the_guides_signature_example_is_what_leadflow_computes() {
    // docs/crm.md, "Signing a callback yourself": the secret, id, timestamp and body it shows.
    let secret =
        WebhookSecret::parse("whsec_y9gEYFHFc6NW8kYpzVCuzs5rJbLd4SdNq3l/s688HDA=").unwrap();
    let body =
        br#"{"status":"accepted","lead_id":"01a1f83b-fb78-7c3a-9f7e-2b1d4c5e6f70","by":"cem"}"#;
    let signature = secret.sign("msg_2f1c9a7e6b0d4e3f8a5b1c2d3e4f5a6b", 1_795_343_000, body);
    assert!(
        GUIDE.contains(&signature),
        "docs/crm.md should show the signature {signature}"
    );
    let id = webhook_id(uuid::Uuid::parse_str("01a202c6-1268-7d2e-8c11-3f6c1b2e0001").unwrap());
    assert_eq!(id, "msg_01a202c612687d2e8c113f6c1b2e0001");
    assert!(
        GUIDE.contains(&id),
        "docs/crm.md should show the webhook-id {id}"
    );
}
