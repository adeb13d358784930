//! docs/bus-events.schema.json describes the `detail` of every event on the bus (EventEnvelope
//! with its LeadEvent), and events/bus holds one EventBridge entry per kind of event, as a
//! consumer receives it (events/README.md, "Bus events"). Here every sample is read as the
//! entry EventBridge delivers and its detail as the Rust types read it; the detail must say
//! exactly what the Rust types write again, and match the schema ("closed": a property the schema
//! does not declare is an error; tests/common). Events built through the Rust types are checked
//! too, and every property the schema declares must turn up in a sample or one of them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::assignment::{AssignedTo, Assignment, AssignmentEnd};
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::scoring::{Grade, Points, ScoreBand, Temperature};
use leadflow_domain::{
    Actor, EventEnvelope, Lead, LeadEvent, LeadId, Stage, SubmissionRules, EVENT_SOURCE,
    SCHEMA_VERSION,
};
use serde_json::{json, Value};

use common::{at, Schemas, BUS_EVENTS};

const README: &str = include_str!("../../../events/README.md");

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/bus")
}

/// The samples in events/bus, by file name without `.json`.
fn samples() -> BTreeMap<String, Value> {
    let dir = samples_dir();
    let mut samples = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name");
        let stem = name
            .strip_suffix(".json")
            .unwrap_or_else(|| panic!("events/bus holds only samples (<EventName>.json): {name}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let sample: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("events/bus/{name} is not JSON: {e}"));
        samples.insert(stem.to_owned(), sample);
    }
    samples
}

/// An EventBridge entry as a consumer receives it (the shape of
/// `aws_lambda_events::event::eventbridge::EventBridgeEvent<EventEnvelope>`), read strictly.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read to check the shape
struct Entry {
    version: String,
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: String,
    time: DateTime<Utc>,
    region: String,
    resources: Vec<String>,
    detail: EventEnvelope,
}

/// Every kind of event. A new kind does not compile here until it is added to `examples()`,
/// gets a sample in events/bus, a definition in docs/bus-events.schema.json and a row in
/// events/README.md.
fn kind(event: &LeadEvent) -> &'static str {
    match event {
        LeadEvent::LeadCaptured { .. }
        | LeadEvent::LeadScored { .. }
        | LeadEvent::LeadQualified { .. }
        | LeadEvent::LeadRouted { .. }
        | LeadEvent::SlaReminderDue { .. }
        | LeadEvent::SlaEscalated { .. }
        | LeadEvent::LeadReassigned { .. }
        | LeadEvent::PartnerOfferExpired { .. }
        | LeadEvent::PartnerOfferAccepted { .. }
        | LeadEvent::StageChanged { .. } => event.name(),
    }
}

/// Events built through the Rust types, at least one of every kind, with what the samples do
/// not show (a cc, an offer nobody took over, the system as actor, ...).
fn examples() -> Vec<EventEnvelope> {
    let lead = common::sla_lead();
    let now = at("2026-11-23T09:15:00Z");
    let raw = vec![
        ("email".to_owned(), "Lena.Huber@Example.at".to_owned()),
        ("company".to_owned(), "Huber KG".to_owned()),
        ("country".to_owned(), "at".to_owned()),
    ];
    let submission = SubmissionRules::default()
        .validate(&raw)
        .expect("a valid submission");
    let captured = Lead::capture(
        LeadId::new_at(now),
        submission,
        &SubmissionContext::default(),
        now,
    );
    let mut events: Vec<EventEnvelope> = captured
        .change
        .events
        .into_iter()
        .map(|e| EventEnvelope::new(captured.lead.id, now, e))
        .collect();
    let queue = Assignment {
        assigned_to: AssignedTo::ManagerQueue {
            id: "maria".into(),
            name: "Maria Vogt".into(),
            email: "maria.vogt@example.com".into(),
        },
        pool: "enterprise".into(),
        rule: None,
        fast_track: false,
        config_version: 3,
        at: now,
        sla_deadline: now + Duration::hours(48),
        accepted_at: None,
        sla: None,
        delivered_at: None,
        outcome: None,
    };
    let mut accepted = common::assignment(
        common::donau_it(),
        "austria-partner",
        "partners",
        false,
        at("2026-11-25T10:00:30Z"),
        &[],
        None,
    );
    accepted.accepted_at = Some(at("2026-11-25T14:00:00Z"));
    let accepted = common::ended(
        accepted,
        AssignmentEnd::Accepted,
        at("2026-11-25T14:00:00Z"),
    );
    let mut declined_nobody_left = common::offer_expired(true);
    if let LeadEvent::PartnerOfferExpired { next, .. } = &mut declined_nobody_left.event {
        *next = None;
    }
    for event in [
        LeadEvent::LeadScored {
            score: Points::from_cents(2_550),
            band: ScoreBand::Engaged,
            grade: Grade::B,
            temperature: Temperature::Warm,
            product: None,
            config_version: 3,
        },
        LeadEvent::StageChanged {
            from: Stage::Engaged,
            to: Stage::Mql,
            actor: Actor::System,
            reason: Some("score 71 reached the MQL threshold".into()),
        },
        LeadEvent::LeadQualified {
            score: Points::from_cents(7_100),
            grade: Grade::A,
            temperature: Temperature::Hot,
            product: None,
            config_version: 3,
            reason: "score 71 reached the MQL threshold".into(),
        },
        LeadEvent::LeadRouted { assignment: queue },
        LeadEvent::PartnerOfferAccepted {
            assignment: accepted,
        },
        LeadEvent::StageChanged {
            from: Stage::Mql,
            to: Stage::Recycled,
            actor: Actor::User("ops-jana".into()),
            reason: None,
        },
    ] {
        events.push(EventEnvelope::new(lead, now, event));
    }
    events.extend([
        common::reminder(),
        common::escalation(),
        common::reassignment(),
        common::offer_expired(false),
        declined_nobody_left,
    ]);
    events
}

#[test]
fn every_sample_is_an_eventbridge_entry_of_a_bus_event() {
    let samples = samples();
    assert!(!samples.is_empty(), "events/bus holds the bus samples");
    for (name, sample) in &samples {
        let entry: Entry = serde_path_to_error::deserialize(sample.clone())
            .unwrap_or_else(|e| panic!("events/bus/{name}.json: {e}"));
        let detail = &entry.detail;
        assert_eq!(
            entry.detail_type, *name,
            "events/bus/{name}.json: named after its detail-type"
        );
        assert_eq!(
            entry.detail_type,
            detail.detail_type(),
            "events/bus/{name}.json: detail-type is the event's type"
        );
        assert_eq!(sample["detail"]["type"], entry.detail_type.as_str());
        assert_eq!(entry.version, "0");
        assert_eq!(entry.source, EVENT_SOURCE, "events/bus/{name}.json");
        assert_eq!(detail.schema_version, SCHEMA_VERSION);
        assert_eq!(
            entry.resources,
            [format!("lead/{}", detail.lead_id)],
            "events/bus/{name}.json: the publisher names the lead as the resource"
        );
        assert_eq!(
            entry.time, detail.occurred_at,
            "events/bus/{name}.json: the publisher sets the entry's time to occurred_at"
        );
        // Nothing the Rust types would drop or fill in: the sample is what leadflow sends.
        assert_eq!(
            serde_json::to_value(detail).unwrap(),
            sample["detail"],
            "events/bus/{name}.json: the detail is not what the Rust types write again"
        );
    }
}

#[test]
fn every_kind_of_event_has_a_sample_and_a_row_in_the_readme() {
    let kinds: BTreeSet<&str> = examples().iter().map(|e| kind(&e.event)).collect();
    assert_eq!(
        kinds.len(),
        10,
        "examples() has every kind of event: {kinds:?}"
    );
    let samples = samples();
    let sampled: BTreeSet<&str> = samples.keys().map(String::as_str).collect();
    assert_eq!(
        sampled, kinds,
        "events/bus has one sample per kind of event (LeadEvent::name), no more"
    );
    let section = README
        .split("## Bus events")
        .nth(1)
        .expect("events/README.md has a \"Bus events\" section");
    let section = section.split("\n## ").next().unwrap_or_default();
    for name in &kinds {
        assert!(
            section.contains(&format!("`bus/{name}.json`")),
            "events/README.md, Bus events: no row for bus/{name}.json"
        );
    }
}

#[test]
fn bus_events_match_the_schema_and_use_all_of_it() {
    let schemas = Schemas::load();
    let closed = schemas.checker(BUS_EVENTS, true);
    let mut seen = BTreeSet::new();
    for (name, sample) in samples() {
        seen.extend(closed.assert_valid(&format!("events/bus/{name}.json"), &sample["detail"]));
    }
    for event in examples() {
        let value = serde_json::to_value(&event).unwrap();
        seen.extend(
            closed.assert_valid(&format!("a {} built in Rust", kind(&event.event)), &value),
        );
    }
    common::assert_all_used(&schemas, BUS_EVENTS, &seen);
    // One definition per kind, named after it, and the top level takes each.
    let schema = schemas.get(BUS_EVENTS);
    let kinds: BTreeSet<&str> = examples().iter().map(|e| kind(&e.event)).collect();
    let branches: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .expect("the top level is a oneOf")
        .iter()
        .map(|b| b["$ref"].as_str().unwrap().replace("#/$defs/", ""))
        .collect();
    assert_eq!(
        branches,
        kinds.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>()
    );
    for kind in kinds {
        assert_eq!(
            schema["$defs"][kind]["properties"]["type"]["const"], kind,
            "docs/bus-events.schema.json: $defs/{kind} is the {kind} event"
        );
    }
    assert_eq!(schema["$defs"]["SchemaVersion"]["const"], SCHEMA_VERSION);
}

#[test]
fn the_checker_catches_bus_event_mistakes() {
    let schemas = Schemas::load();
    let closed = schemas.checker(BUS_EVENTS, true);
    let samples = samples();
    type Edit = fn(&mut Value);
    let cases: [(&str, &str, Edit, &str); 6] = [
        (
            "a type that does not exist",
            "LeadRouted",
            |d| d["type"] = json!("LeadMoved"),
            "0 of the oneOf branches match",
        ),
        (
            "a field the type does not have",
            "LeadRouted",
            |d| d["manager"] = json!({"id": "maria", "name": "Maria Vogt", "email": "m@x.de"}),
            "$.manager: the schema does not declare it",
        ),
        (
            "an added field in an assignment",
            "LeadReassigned",
            |d| d["to"]["team"] = json!("dach-sales"),
            "$.to.team: the schema does not declare it",
        ),
        (
            "a missing field",
            "SlaEscalated",
            |d| {
                d.as_object_mut().unwrap().remove("manager");
            },
            "\"manager\" is required",
        ),
        (
            "a reminder that takes the lead",
            "SlaReminderDue",
            |d| d["action"] = json!("reassign"),
            "is not one of",
        ),
        (
            "an outcome that does not exist",
            "PartnerOfferExpired",
            |d| d["offer"]["outcome"]["end"] = json!("forgotten"),
            "is not one of",
        ),
    ];
    for (name, sample, edit, says) in cases {
        let mut bad = samples[sample]["detail"].clone();
        edit(&mut bad);
        let errors = closed.validate(&bad).errors;
        assert!(
            errors.iter().any(|e| e.contains(says)),
            "{name}: expected an error containing {says:?}, got {errors:#?}"
        );
    }
}

/// Keys that hold a lead's contact data or consent proof: none may appear in a bus event
/// (events sit in queues and DLQs for 14 days; consumers load the lead by its id).
const CONTACT_KEYS: [&str; 8] = [
    "lead",
    "phone",
    "first_name",
    "last_name",
    "consent",
    "ip",
    "user_agent",
    "custom_fields",
];

/// The keys of `v` at any depth, with the path to each.
fn keys(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                out.push(format!("{path}.{k}"));
                keys(inner, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, inner) in a.iter().enumerate() {
                keys(inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn no_event_carries_the_leads_contact_data() {
    let now = at("2026-11-23T09:15:00Z");
    let raw: Vec<(String, String)> = [
        ("email", "lena.huber@example.at"),
        ("phone", "+43 1 2345678"),
        ("first_name", "Lena"),
        ("company", "Huber KG"),
        ("source", "webinar"),
        ("consent", "yes"),
        ("consent_text", "Yes, send me news."),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let submission = SubmissionRules::default()
        .validate(&raw)
        .expect("a valid submission");
    let context = SubmissionContext {
        ip: Some("203.0.113.77".into()),
        user_agent: Some("Mozilla/5.0 (TestAgent)".into()),
    };
    let captured = Lead::capture(LeadId::new_at(now), submission, &context, now);
    assert!(captured.lead.consent.is_some() && captured.lead.phone.is_some());
    let mut events: Vec<(String, Value)> = captured
        .change
        .events
        .iter()
        .map(|e| {
            let envelope = EventEnvelope::new(captured.lead.id, now, e.clone());
            (
                format!("captured {}", e.name()),
                serde_json::to_value(envelope).unwrap(),
            )
        })
        .collect();
    assert!(!events.is_empty());
    events.extend(examples().iter().map(|e| {
        (
            format!("a {} built in Rust", kind(&e.event)),
            serde_json::to_value(e).unwrap(),
        )
    }));
    events.extend(
        samples()
            .into_iter()
            .map(|(name, s)| (format!("events/bus/{name}.json"), s["detail"].clone())),
    );
    for (what, event) in &events {
        let text = event.to_string();
        for value in [
            "lena.huber@example.at",
            "+43 1 2345678",
            "203.0.113.77",
            "TestAgent",
        ] {
            assert!(!text.contains(value), "{what} carries {value:?}: {text}");
        }
        let mut found = Vec::new();
        keys(event, "$", &mut found);
        for key in &found {
            let last = key.rsplit('.').next().unwrap_or_default();
            assert!(
                !CONTACT_KEYS.contains(&last),
                "{what}: {key} is contact data, which stays in the table"
            );
        }
    }
    // The lead itself travels by id.
    let captured_event = &events[0].1;
    assert_eq!(captured_event["lead_id"], captured.lead.id.to_string());
    assert_eq!(captured_event["source"], "webinar");
}
