//! docs/crm-webhook.schema.json describes exactly what a CRM receives about a lead (lead.routed,
//! lead.offered), docs/crm-notice.schema.json the SLA notices: payloads built through the public
//! API (a captured lead, scored events, BANT, an assignment with its SLA ladder; the notices from
//! the bus events sla-tick announces) are checked against them with a small JSON Schema checker
//! (tests/common). The checker runs "closed": a property the schema does not declare is an error
//! even though the published schemas leave objects open (receivers must ignore fields added
//! within a version). And every property a schema declares must turn up in one of the payloads.
//! So renaming, adding or removing a field in the Rust types fails here until the schema says
//! the same.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leadflow_domain::assignment::{
    AssignedTo, Assignment, AssignmentEnd, AssignmentOutcome, SlaAction, SlaStepTaken, SlaTrack,
};
use leadflow_domain::bant::Bant;
use leadflow_domain::crm::{
    webhook_id, Activity, LeadContext, LeadRoutedPayload, Notice, NoticePayload, Recipient,
    ACTIVITIES_SENT, LEAD_OFFERED, LEAD_REASSIGNED, LEAD_ROUTED, OFFER_EXPIRED, PAYLOAD_VERSION,
    SLA_ESCALATED, SLA_REMINDER,
};
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::lead_score::LeadScore;
use leadflow_domain::scoring::{ScoreState, ScoringModel};
use leadflow_domain::webhook::WebhookSecret;
use leadflow_domain::{
    EventEnvelope, Lead, LeadEvent, LeadId, Stage, SubmissionRules, TrackedEvent,
};
use serde_json::{json, Value};

use common::{at, Schemas, BUS_EVENTS, CRM_NOTICE, CRM_WEBHOOK};

const GUIDE: &str = include_str!("../../../docs/crm.md");

// ---------------------------------------------------------------------------------------------
// Payloads, built the way crm-webhook builds them.

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
        let server = leadflow_domain::tracking::Reporter::Server { lead_id: lead.id };
        let event = TrackedEvent::parse(e, server, now).expect("a valid tracked event");
        let applied = state.apply(model, &event.behaviour());
        activities.push(Activity {
            event,
            applied: serde_json::to_value(&applied).unwrap(),
        });
    }
    (state, activities)
}

fn payload(context: LeadContext, routed_at: DateTime<Utc>) -> Value {
    sent(LEAD_ROUTED, context, routed_at)
}

/// The payload of a `kind` (lead.routed, lead.offered) as it is sent.
fn sent(kind: &str, context: LeadContext, routed_at: DateTime<Utc>) -> Value {
    let payload = LeadRoutedPayload {
        kind: kind.into(),
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
/// consent, routed to `assignment` (made at the time it is given); the context sent about it,
/// and when it was routed.
fn jonas(assignment: impl FnOnce(DateTime<Utc>) -> Assignment) -> (LeadContext, DateTime<Utc>) {
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
    let assignment = assignment(routed);
    lead.assignment = Some(assignment.clone());
    let context = LeadContext::build(
        &lead,
        &assignment,
        Some(&score),
        &interests,
        &activities,
        Some(API_URL),
    );
    (context, routed)
}

/// The well-known lead, routed to an owner by a rule; the first step of the ladder is due.
fn full() -> Value {
    let (context, routed) = jonas(|routed| Assignment {
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
        sla: Some(SlaTrack {
            team: Some("dach-sales".into()),
            hot: false,
            steps_taken: 0,
            next_due: Some(routed + Duration::hours(24)),
            steps: vec![],
        }),
        delivered_at: None,
        outcome: None,
    });
    payload(context, routed)
}

/// The well-known lead offered to a partner, as crm-webhook sends an open offer
/// (`lead.offered`): without its contact data.
fn offered() -> Value {
    let (context, routed) = jonas(|routed| Assignment {
        assigned_to: AssignedTo::Partner {
            id: "reseller-de".into(),
            name: "Spree Vertrieb GmbH".into(),
        },
        pool: "dach-partner".into(),
        rule: Some("dach-partner".into()),
        fast_track: false,
        config_version: 3,
        at: routed,
        sla_deadline: routed + Duration::hours(48),
        accepted_at: None,
        sla: Some(SlaTrack {
            team: Some("partners".into()),
            hot: false,
            steps_taken: 0,
            next_due: Some(routed + Duration::hours(48)),
            steps: vec![],
        }),
        delivered_at: None,
        outcome: None,
    });
    assert!(context.assignment.is_open_offer());
    sent(LEAD_OFFERED, context.offered(), routed)
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
        sla: None,
        delivered_at: None,
        outcome: None,
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
        sla: Some(SlaTrack {
            team: Some("dach-sales".into()),
            hot: true,
            steps_taken: 1,
            next_due: None,
            steps: vec![SlaStepTaken {
                step: 0,
                action: SlaAction::RemindOwner,
                due: routed + Duration::hours(1),
                at: routed + Duration::hours(1) + Duration::seconds(30),
            }],
        }),
        delivered_at: Some(routed + Duration::seconds(2)),
        outcome: Some(AssignmentOutcome {
            end: AssignmentEnd::Accepted,
            at: routed + Duration::hours(3),
            waited_seconds: 10_800,
            waited_working_seconds: 10_800,
            system_seconds: Some(2),
            person_seconds: Some(10_798),
        }),
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
    let schemas = Schemas::load();
    let closed = schemas.checker(CRM_WEBHOOK, true);
    let mut seen = BTreeSet::new();
    for (name, value) in [
        ("the full payload", full()),
        ("the bare payload", bare()),
        ("the queued and accepted payload", queued_and_accepted()),
        ("the offered payload", offered()),
        ("the example of docs/crm.md", guide_example()),
    ] {
        seen.extend(closed.assert_valid(name, &value));
    }
    common::assert_all_used(&schemas, CRM_WEBHOOK, &seen);
}

#[test]
fn an_offer_withholds_the_contact_data() {
    let offer = offered();
    let data = &offer["data"];
    assert_eq!(offer["type"], LEAD_OFFERED);
    assert!(data["contact"].is_null(), "no contact: {data}");
    for (part, field) in [
        ("company", "name"),
        ("company", "postcode"),
        ("attribution", "landing_page_url"),
        ("links", "lead"),
    ] {
        assert!(
            data[part][field].is_null(),
            "{part}.{field} is withheld: {}",
            data[part][field]
        );
    }
    assert!(data["consent"].is_null(), "consent is withheld");
    assert!(
        data["bant"].is_null(),
        "BANT notes may name people: withheld"
    );
    assert_eq!(
        data["custom_fields"],
        json!({}),
        "custom fields are withheld"
    );
    let activities = data["activities"].as_array().unwrap();
    assert!(!activities.is_empty());
    assert!(
        activities.iter().all(|a| a["url"].is_null()),
        "the visited URLs are withheld"
    );
    // What the partner decides on is all there, and it can answer.
    let routed = full();
    let full = &routed["data"];
    for (part, field) in [
        ("company", "name"),
        ("company", "postcode"),
        ("attribution", "landing_page_url"),
        ("links", "lead"),
    ] {
        assert!(
            full[part][field].is_string(),
            "the full payload has {part}.{field}"
        );
    }
    assert!(full["contact"].is_object() && full["consent"].is_object());
    assert!(full["bant"].is_object());
    assert_ne!(full["custom_fields"], json!({}));
    assert!(full["activities"][0]["url"].is_string());
    for same in ["score", "interests", "stage", "created_at"] {
        assert_eq!(data[same], full[same], "{same} is the same in an offer");
    }
    assert_eq!(data["company"]["country"], "DE");
    assert_eq!(data["company"]["industry"], full["company"]["industry"]);
    assert_eq!(data["attribution"]["utm"], full["attribution"]["utm"]);
    assert_eq!(data["links"]["callback"], full["links"]["callback"]);
    assert_eq!(data["assignment"]["assigned_to"]["kind"], "partner");
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

    let schemas = Schemas::load();
    let schema = schemas.get(CRM_WEBHOOK);
    assert_eq!(
        schema["properties"]["type"]["enum"],
        json!([LEAD_ROUTED, LEAD_OFFERED])
    );
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
    let schemas = Schemas::load();
    let closed = schemas.checker(CRM_WEBHOOK, true);
    let open = schemas.checker(CRM_WEBHOOK, false);
    let good = full();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 12] = [
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
        (
            "another payload type",
            |v| v["type"] = json!("lead.updated"),
            "is not one of",
        ),
        (
            "a contact that is neither an object nor null",
            |v| v["data"]["contact"] = json!("jonas.becker@example.de"),
            "0 of the anyOf branches match",
        ),
        (
            "an SLA step that does not exist",
            |v| {
                v["data"]["assignment"]["sla"]["steps"] = json!([{"step": 0,
                    "action": "call_owner", "due": "2026-11-23T10:21:05Z",
                    "at": "2026-11-23T10:21:30Z"}])
            },
            "is not one of",
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

// ---------------------------------------------------------------------------------------------
// SLA notices: made from the events sla-tick announces, sent the way crm-webhook sends them.

/// The notice crm-webhook sends for a bus event: its type, for whom, and the body read back.
fn notice(event: &EventEnvelope) -> Option<(&'static str, Recipient, Value)> {
    let (kind, recipient, notice) = Notice::of(event, Some(API_URL))?;
    let payload = NoticePayload {
        kind: kind.into(),
        version: PAYLOAD_VERSION,
        timestamp: event.occurred_at,
        text: notice.text(kind),
        data: notice,
    };
    let body = serde_json::to_vec(&payload).unwrap();
    Some((kind, recipient, serde_json::from_slice(&body).unwrap()))
}

/// Every event that makes a notice, with the notice's type.
fn noticed() -> [(EventEnvelope, &'static str); 4] {
    [
        (common::reminder(), SLA_REMINDER),
        (common::escalation(), SLA_ESCALATED),
        (common::reassignment(), LEAD_REASSIGNED),
        (common::offer_expired(false), OFFER_EXPIRED),
    ]
}

#[test]
fn sla_notices_match_their_schema_and_use_all_of_it() {
    let schemas = Schemas::load();
    let closed = schemas.checker(CRM_NOTICE, true);
    let bus = schemas.checker(BUS_EVENTS, true);
    let mut seen = BTreeSet::new();
    for (event, kind) in noticed() {
        // The event is one the bus carries.
        bus.assert_valid(event.detail_type(), &serde_json::to_value(&event).unwrap());
        let (sent_as, _, body) =
            notice(&event).unwrap_or_else(|| panic!("{} makes a notice", event.detail_type()));
        assert_eq!(sent_as, kind, "{}", event.detail_type());
        assert_eq!(body["type"], kind);
        assert_eq!(body["version"], PAYLOAD_VERSION);
        assert_eq!(body["timestamp"], json!(event.occurred_at));
        assert_eq!(body["data"]["lead_id"], json!(event.lead_id));
        seen.extend(closed.assert_valid(kind, &body));
    }
    common::assert_all_used(&schemas, CRM_NOTICE, &seen);
    assert_eq!(
        schemas.get(CRM_NOTICE)["properties"]["type"]["enum"],
        json!([SLA_REMINDER, SLA_ESCALATED, LEAD_REASSIGNED, OFFER_EXPIRED]),
        "the schema names the notice types crm.rs sends"
    );
    assert_eq!(
        schemas.get(CRM_NOTICE)["properties"]["version"]["const"],
        PAYLOAD_VERSION
    );
}

#[test]
fn a_notice_names_the_people_concerned() {
    let lead_page = format!("{API_URL}leads/{}", common::sla_lead());

    let (_, to, reminder) = notice(&common::reminder()).unwrap();
    assert_eq!(to, Recipient::Assignee(common::anna()));
    let text = reminder["text"].as_str().unwrap();
    assert!(
        text.contains("Anna Berg") && text.contains("(cc Maria Vogt)"),
        "a reminder names the assignee and the manager in copy: {text}"
    );
    assert!(text.contains(&common::sla_lead().to_string()) && text.contains(&lead_page));
    let data = &reminder["data"];
    assert_eq!(
        (&data["step"], &data["action"]),
        (&json!(1), &json!("remind_with_manager"))
    );
    assert_eq!(data["manager"]["id"], "maria");
    assert!(data["now_with"].is_null());
    assert_eq!(data["links"]["lead"], lead_page.as_str());

    let (_, to, escalation) = notice(&common::escalation()).unwrap();
    assert_eq!(to, Recipient::Manager(common::maria()));
    let text = escalation["text"].as_str().unwrap();
    assert!(
        text.contains("Escalation") && text.contains("Anna Berg"),
        "an escalation names whom the lead waits for: {text}"
    );
    assert_eq!(escalation["data"]["action"], "escalate_to_manager");
    assert_eq!(escalation["data"]["manager"]["name"], "Maria Vogt");

    let (_, to, reassigned) = notice(&common::reassignment()).unwrap();
    assert_eq!(
        to,
        Recipient::Assignee(common::anna()),
        "told to the owner who lost the lead"
    );
    let text = reassigned["text"].as_str().unwrap();
    assert!(
        text.contains("taken from Anna Berg") && text.contains("with Cem Arslan now"),
        "a reassignment names who has the lead now: {text}"
    );
    let data = &reassigned["data"];
    assert_eq!(data["now_with"]["name"], "Cem Arslan");
    assert_eq!(
        (&data["step"], &data["action"]),
        (&json!(2), &json!("reassign"))
    );
    assert_eq!(data["assignment"]["outcome"]["end"], "reassigned");

    let (_, to, expired) = notice(&common::offer_expired(false)).unwrap();
    assert_eq!(to, Recipient::Assignee(common::alpen_it()));
    let text = expired["text"].as_str().unwrap();
    assert!(
        text.contains("Alpen IT GmbH") && text.contains("with Donau Systems GmbH now"),
        "{text}"
    );
    let data = &expired["data"];
    assert_eq!(data["action"], "expire_offer");
    assert_eq!(data["step"], 0);
    assert_eq!(data["due"], data["assignment"]["sla_deadline"]);
    assert_eq!(data["assignment"]["outcome"]["end"], "offer_expired");

    // A partner that declined knows: nobody is told. Events that are not SLA steps make no
    // notice.
    let declined = common::offer_expired(true);
    assert!(matches!(
        &declined.event,
        LeadEvent::PartnerOfferExpired { offer, .. }
            if offer.outcome.as_ref().map(|o| o.end) == Some(AssignmentEnd::Declined)
    ));
    assert!(Notice::of(&declined, Some(API_URL)).is_none());
    let routed = EventEnvelope::new(
        common::sla_lead(),
        at("2026-11-23T09:20:01Z"),
        LeadEvent::LeadRouted {
            assignment: common::assignment(
                common::anna(),
                "dach-crm",
                "dach-sales",
                true,
                at("2026-11-23T09:20:01Z"),
                &[],
                Some(at("2026-11-23T09:35:01Z")),
            ),
        },
    );
    assert!(Notice::of(&routed, Some(API_URL)).is_none());
}
