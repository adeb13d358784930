//! The CPU side of a CRM handover, per lead: build the payload (lead context with score
//! explanation, interests and 20 activities), serialise it, sign it (Standard Webhooks); and on
//! the way back, check a callback's signature and parse its body.
//!
//! `cargo bench -p leadflow-domain --bench crm -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use leadflow_domain::assignment::{AssignedTo, Assignment};
use leadflow_domain::crm::{Activity, CrmUpdate, LeadContext, LeadRoutedPayload};
use leadflow_domain::lead::SubmissionContext;
use leadflow_domain::lead_score::LeadScore;
use leadflow_domain::scoring::{BehaviourEvent, FitProfile, ScoreState, ScoringModel};
use leadflow_domain::webhook::WebhookSecret;
use leadflow_domain::{Lead, LeadId, SubmissionRules, TrackedEvent};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

fn lead() -> Lead {
    let raw: Vec<(String, String)> = [
        ("email", "jana.berg@customer.de"),
        ("first_name", "Jana"),
        ("last_name", "Berg"),
        ("company", "Customer GmbH"),
        ("job_title", "Head of Sales"),
        ("country", "DE"),
        ("postcode", "80331"),
        ("utm_source", "newsletter"),
        ("utm_campaign", "spring"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = SubmissionRules::default().validate(&raw).unwrap();
    Lead::capture(
        LeadId::new_at(now()),
        s,
        &SubmissionContext::default(),
        now(),
    )
    .lead
}

fn activities(n: usize) -> Vec<Activity> {
    (0..n)
        .map(|i| {
            let at = now() - Duration::hours(i as i64 * 5);
            let event = TrackedEvent::parse(
                &serde_json::json!({
                    "event_id": format!("e-{i}"),
                    "type": "page_view",
                    "occurred_at": at.to_rfc3339(),
                    "url": "https://www.acme.de/pricing?plan=pro",
                    "tags": ["crm", "pricing"]
                }),
                leadflow_domain::tracking::Reporter::Server {
                    lead_id: "0190d2a4-0000-7000-8000-000000000001".parse().unwrap(),
                },
                now(),
            )
            .unwrap();
            Activity {
                event,
                applied: serde_json::json!({"points": 10, "rules": [{"rule_id": "pricing-page", "points": 10}]}),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let model = ScoringModel::example();
    let history: Vec<BehaviourEvent> = (0..50)
        .map(|i| BehaviourEvent {
            event_id: format!("h-{i}"),
            event_type: "page_view".into(),
            occurred_at: now() - Duration::hours(i * 7),
            url: Some("https://www.acme.de/pricing".into()),
            tags: vec!["crm".into()],
        })
        .collect();
    let state = ScoreState::rescore(&model, &history);
    let fit = FitProfile {
        job_title: Some("Head of Sales".into()),
        country: Some("DE".into()),
        ..FitProfile::default()
    };
    let lead = lead();
    let mut score = LeadScore::new(lead.id, now());
    score.snapshot = Some(state.snapshot(&model, &fit, now()));
    score.state = state;
    let interests: BTreeMap<String, f64> = score.state.interests(&model, now());
    let activities = activities(20);
    let assignment = Assignment {
        assigned_to: AssignedTo::Owner {
            id: "anna".into(),
            name: "Anna Berg".into(),
            email: "anna@example.com".into(),
        },
        pool: "dach-crm".into(),
        rule: Some("dach-crm".into()),
        fast_track: false,
        config_version: 3,
        at: now(),
        sla_deadline: now() + Duration::hours(24),
        accepted_at: None,
        sla: None,
        delivered_at: None,
        outcome: None,
    };
    let secret = WebhookSecret::parse(SECRET).unwrap();

    let build = || {
        let payload = LeadRoutedPayload {
            kind: "lead.routed".into(),
            version: 1,
            timestamp: now(),
            data: LeadContext::build(
                &lead,
                &assignment,
                Some(&score),
                &interests,
                &activities,
                Some("https://api.example.com"),
            ),
        };
        serde_json::to_vec(&payload).unwrap()
    };
    let body = build();
    println!("payload: {} bytes", body.len());

    let mut g = c.benchmark_group("crm");
    g.bench_function("build + serialise the payload", |b| {
        b.iter(|| black_box(build()))
    });
    g.bench_function("sign the payload", |b| {
        b.iter(|| black_box(secret.sign("msg_0123456789abcdef", 1_772_355_600, black_box(&body))))
    });
    let callback = br#"{"status":"accepted","lead_id":"0190d2a4-0000-7000-8000-000000000001","external_id":"006A1","by":"anna"}"#;
    let signature = secret.sign("msg_cb", 1_772_355_600, callback);
    g.bench_function("verify + parse a callback", |b| {
        b.iter(|| {
            assert!(secret.matches("msg_cb", 1_772_355_600, black_box(callback), &signature));
            let v: serde_json::Value = serde_json::from_slice(callback).unwrap();
            black_box(CrmUpdate::parse(&v).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
