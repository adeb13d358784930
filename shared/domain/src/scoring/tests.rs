//! Tests of the scoring model and engine: examples first, then properties against a
//! brute-force reference.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use proptest::prelude::*;

use super::*;
use crate::tag::Tag;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[derive(Deserialize)]
struct Doc {
    scoring: ScoringModel,
}

fn parse(yaml: &str) -> Result<ScoringModel, serde_norway::Error> {
    serde_norway::from_str::<Doc>(yaml).map(|d| d.scoring)
}

/// The error of an invalid model: its message and line.
fn error(yaml: &str) -> (String, usize) {
    let err = parse(yaml).expect_err("the model must be rejected");
    let line = err.location().map(|l| l.line()).unwrap_or(0);
    (err.to_string(), line)
}

fn ev(id: &str, event_type: &str, when: &str, url: Option<&str>, tags: &[&str]) -> BehaviourEvent {
    BehaviourEvent {
        event_id: id.into(),
        event_type: event_type.into(),
        occurred_at: at(when),
        url: url.map(Into::into),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn pts(p: f64) -> Points {
    Points::parse(p).unwrap()
}

fn contribution(s: &ScoreSnapshot, id: &str) -> Option<Points> {
    s.contributions
        .iter()
        .find(|c| c.rule_id == id)
        .map(|c| c.points)
}

const MINIMAL: &str = "scoring:\n  thresholds: { engaged: 20, mql: 60 }\n";

// ---------------------------------------------------------------------------------------------
// The model

#[test]
fn the_example_is_valid_and_is_the_example_model() {
    let m = parse(EXAMPLE_YAML).unwrap();
    assert_eq!(m, ScoringModel::example());
    assert_eq!(m.behaviour().len(), 12);
    assert_eq!(m.fit().len(), 6);
    assert_eq!(m.products().len(), 2);
    assert_eq!(m.thresholds_for(Some(0)).mql, pts(50.0));
    assert_eq!(m.thresholds_for(Some(0)).engaged, pts(20.0));
    assert_eq!(m.thresholds_for(Some(1)).engaged, pts(25.0));
    let pricing = m.behaviour_index("pricing-page").unwrap();
    assert_eq!(m.points(pricing, None), pts(15.0));
    assert_eq!(m.points(pricing, Some(0)), pts(25.0));
    assert_eq!(m.points(pricing, Some(1)), pts(15.0));
    assert_eq!(
        m.decay()
            .half_life(&EventType::parse("page_view").unwrap())
            .as_days(),
        14.0
    );
    assert_eq!(
        m.decay()
            .half_life(&EventType::parse("download").unwrap())
            .as_days(),
        30.0
    );
}

#[test]
fn a_model_round_trips_through_yaml_and_json() {
    let m = ScoringModel::example();
    let yaml = serde_norway::to_string(&m).unwrap();
    let back: ScoringModel = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(back, m);
    let json = serde_json::to_string(&m).unwrap();
    let back: ScoringModel = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn optional_sections_have_defaults() {
    let m = parse(MINIMAL).unwrap();
    assert!(m.behaviour().is_empty() && m.fit().is_empty() && m.products().is_empty());
    assert_eq!(*m.grades(), Grades::default());
    assert_eq!(*m.temperature(), TemperatureRules::default());
    assert_eq!(m.decay().default_half_life_days.as_days(), 30.0);
    assert_eq!(m.interest_half_life().as_days(), 30.0);
    assert_eq!(*m.mql_minimum(), MqlMinimum::default());
    assert!(m.mql_minimum().is_met(&FitProfile::default(), Grade::C));
    let s = ScoreState::default().snapshot(&m, &FitProfile::default(), at("2026-01-01T00:00:00Z"));
    assert_eq!(s.score, Points::ZERO);
    assert_eq!(s.band, ScoreBand::Low);
    assert_eq!(s.grade, Grade::C);
    assert_eq!(s.temperature, Temperature::Cold);
}

#[test]
fn thresholds_must_be_ordered_and_the_error_has_a_line() {
    let (msg, line) = error("scoring:\n  thresholds:\n    engaged: 60\n    mql: 50\n");
    assert!(
        msg.contains("thresholds.mql (50.00) must be greater than thresholds.engaged (60.00)"),
        "{msg}"
    );
    assert!((2..=5).contains(&line), "line {line}: {msg}");
    let (msg, _) = error("scoring:\n  thresholds: { engaged: 0, mql: 50 }\n");
    assert!(
        msg.contains("thresholds.engaged must be greater than 0"),
        "{msg}"
    );
}

/// A model with the given behaviour / fit / products sections (YAML, indented by 2).
fn with(sections: &str) -> String {
    format!("{MINIMAL}{sections}")
}

#[test]
fn errors_point_at_the_offending_value() {
    let located = |yaml: &str| {
        let err = parse(yaml).expect_err("invalid");
        let l = err.location().expect("a location");
        (l.line(), l.column())
    };
    // The mapping whose settings disagree.
    assert_eq!(
        located("scoring:\n  thresholds:\n    engaged: 60\n    mql: 50\n"),
        (3, 5)
    );
    // The list with the duplicate.
    assert_eq!(
        located(&with("  behaviour:\n    - { id: a, event_type: x, points: 1 }\n    - { id: a, event_type: y, points: 2 }\n")),
        (4, 5)
    );
    // The value itself.
    assert_eq!(
        located(&with(
            "  behaviour:\n    - id: a\n      event_type: page_view\n      points: 1.234\n"
        )),
        (6, 15)
    );
    assert_eq!(
        located(&with("  behaviour:\n    - id: a\n      event_type: page_view\n      url: ''\n      points: 1\n")),
        (6, 12)
    );
    // The rule.
    assert_eq!(
        located(&with(
            "  fit:\n    - id: a\n      field: country\n      points: 1\n"
        )),
        (4, 7)
    );
}

#[test]
fn rule_ids_are_unique_and_well_formed() {
    let (msg, line) = error(&with(
        "  behaviour:\n    - { id: a, event_type: x, points: 1 }\n    - { id: a, event_type: y, points: 2 }\n",
    ));
    assert!(
        msg.contains("rule id \"a\" is used more than once"),
        "{msg}"
    );
    assert!(line >= 3, "line {line}: {msg}");
    let (msg, _) = error(&with(
        "  behaviour:\n    - { id: a, event_type: x, points: 1 }\n  fit:\n    - { id: a, field: country, in: [DE], points: 2 }\n",
    ));
    assert!(
        msg.contains("rule id \"a\" is used more than once"),
        "{msg}"
    );
    let (msg, line) = error(&with(
        "  behaviour:\n    - id: Pricing Page\n      event_type: page_view\n      points: 1\n",
    ));
    assert!(msg.contains("\"Pricing Page\" is not a valid id"), "{msg}");
    assert_eq!(line, 4, "{msg}");
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    let (msg, line) = error(&with(
        "  behaviour:\n    - id: a\n      event_type: x\n      pointz: 1\n",
    ));
    assert!(msg.contains("unknown field `pointz`"), "{msg}");
    assert_eq!(line, 6, "{msg}");
    let (msg, _) = error("scoring:\n  thresholds: { engaged: 20, mql: 60, sql: 80 }\n");
    assert!(msg.contains("unknown field `sql`"), "{msg}");
    let (msg, _) = error(&with("  scoring_model: 1\n"));
    assert!(msg.contains("unknown field `scoring_model`"), "{msg}");
}

#[test]
fn product_overrides_must_name_behaviour_rules() {
    let (msg, _) = error(&with(
        "  behaviour:\n    - { id: pricing-page, event_type: page_view, points: 15 }\n  products:\n    - id: crm\n      tags_any: [crm]\n      points: { pricing: 25 }\n",
    ));
    assert!(
        msg.contains("product crm: points names \"pricing\", which is not a behaviour rule"),
        "{msg}"
    );
    let (msg, _) = error(&with(
        "  products:\n    - { id: crm, tags_any: [crm], thresholds: { engaged: 70 } }\n",
    ));
    assert!(
        msg.contains(
            "product crm: thresholds.mql (60.00) must be greater than thresholds.engaged (70.00)"
        ),
        "{msg}"
    );
    let (msg, _) = error(&with(
        "  products:\n    - { id: crm, tags_any: [crm] }\n    - { id: crm, tags_any: [x] }\n",
    ));
    assert!(
        msg.contains("product id \"crm\" is used more than once"),
        "{msg}"
    );
    let (msg, _) = error(&with("  products:\n    - { id: crm, tags_any: [] }\n"));
    assert!(msg.contains("tags_any must not be empty"), "{msg}");
}

#[test]
fn fit_rules_take_exactly_one_matcher() {
    for rule in [
        "{ id: f, field: country, points: 1 }",
        "{ id: f, field: country, in: [DE], contains_any: [d], points: 1 }",
    ] {
        let (msg, _) = error(&with(&format!("  fit:\n    - {rule}\n")));
        assert!(
            msg.contains("fit rule f: give exactly one of contains_any and in"),
            "{msg}"
        );
    }
    let (msg, _) = error(&with(
        "  fit:\n    - { id: f, field: country, in: [], points: 1 }\n",
    ));
    assert!(msg.contains("in must not be empty"), "{msg}");
    let (msg, _) = error(&with(
        "  fit:\n    - { id: f, field: revenue, in: [x], points: 1 }\n",
    ));
    assert!(msg.contains("unknown variant `revenue`"), "{msg}");
}

#[test]
fn other_settings_are_checked() {
    let cases = [
        ("  grades: { A: 20, B: 20 }\n", "grades.A (20.00) must be greater than grades.B (20.00)"),
        ("  temperature: { hot: 10, warm: 10 }\n", "temperature.hot (10.00) must be greater than temperature.warm (10.00)"),
        ("  temperature: { hot: 10, warm: 0 }\n", "temperature.warm must be greater than 0"),
        ("  temperature: { window_days: 91, hot: 30, warm: 10 }\n", "temperature.window_days must be between 1 and 90"),
        ("  decay: { default_half_life_days: 0 }\n", "a half-life must be greater than 0"),
        ("  decay: { by_event_type: { page_view: -1 } }\n", "a half-life must be greater than 0"),
        ("  interest_half_life_days: .nan\n", "a half-life must be greater than 0"),
        ("  behaviour:\n    - { id: a, event_type: x, points: 1, cap: { count: 0, per: day } }\n", "cap.count must be between 1 and"),
        ("  behaviour:\n    - { id: a, event_type: x, points: 1, cap: { count: 1, per: year } }\n", "unknown variant `year`"),
        ("  behaviour:\n    - { id: a, event_type: x, points: 1.234 }\n", "at most two decimal places"),
        ("  behaviour:\n    - { id: a, event_type: x, url: \"\", points: 1 }\n", "must not be empty"),
        ("  behaviour:\n    - { id: a, event_type: x, tags_any: [], points: 1 }\n", "tags_any must not be empty"),
        ("  behaviour:\n    - { id: a, event_type: \"page view\", points: 1 }\n", "not a valid event type"),
        ("  mql_minimum: { requires_any_of: [fax] }\n", "unknown variant `fax`"),
        ("  mql_minimum: { min_grade: D }\n", "unknown variant `D`"),
    ];
    for (section, expected) in cases {
        let (msg, line) = error(&with(section));
        assert!(msg.contains(expected), "{section}: {msg}");
        assert!(line >= 3, "{section}: line {line}: {msg}");
    }
    let many: String = (0..65)
        .map(|i| format!("    - {{ id: r{i}, event_type: x, points: 1 }}\n"))
        .collect();
    let (msg, _) = error(&with(&format!("  behaviour:\n{many}")));
    assert!(msg.contains("at most 64 behaviour rules"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Matching

fn rule<'m>(m: &'m ScoringModel, id: &str) -> &'m BehaviourRule {
    &m.behaviour()[m.behaviour_index(id).unwrap()]
}

#[test]
fn behaviour_rules_match_type_url_and_tags() {
    const NONE: &[&str] = &[];
    let m = ScoringModel::example();
    let pricing = rule(&m, "pricing-page");
    let lower = |u: &str| u.to_lowercase();
    assert!(pricing.matches(
        "page_view",
        Some(&lower("https://acme.de/Pricing?plan=pro")),
        NONE
    ));
    assert!(!pricing.matches(
        "page_view",
        Some(&lower("https://acme.de/blog/what-pricing-means")),
        NONE
    ));
    assert!(!pricing.matches("page_view", None, NONE));
    assert!(!pricing.matches("download", Some("https://acme.de/pricing"), NONE));
    let crm = rule(&m, "product-crm-page");
    assert!(crm.matches("page_view", None, &[Tag::parse("CRM").unwrap()]));
    assert!(!crm.matches("page_view", None, &[Tag::parse("erp").unwrap()]));
    assert!(!crm.matches("page_view", None, NONE));
}

#[test]
fn every_matching_rule_applies_and_negative_rules_subtract() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    let a = s.apply(
        &m,
        &ev(
            "e1",
            "page_view",
            "2026-03-02T10:00:00Z",
            Some("https://acme.de/pricing"),
            &["CRM", "crm"],
        ),
    );
    assert_eq!(a.status, ApplyStatus::Applied);
    let ids: Vec<&str> = a.rules.iter().map(|r| r.rule_id.as_str()).collect();
    assert_eq!(ids, ["page-view", "pricing-page", "product-crm-page"]);
    assert!(a.counted());
    let a = s.apply(
        &m,
        &ev(
            "e2",
            "page_view",
            "2026-03-02T10:05:00Z",
            Some("https://acme.de/careers/jobs"),
            &[],
        ),
    );
    assert_eq!(a.rules.len(), 2);
    let snap = s.snapshot(&m, &FitProfile::default(), at("2026-03-02T10:05:00Z"));
    // e1 counts for page-view, pricing-page (25 for a CRM lead) and product-crm-page; e2 for
    // page-view and careers-page. Decay over five minutes shows in the hundredths at most.
    assert_eq!(snap.product.as_deref(), Some("crm"));
    assert_eq!(contribution(&snap, "pricing-page"), Some(pts(25.0)));
    assert_eq!(contribution(&snap, "page-view"), Some(pts(2.0)));
    assert_eq!(contribution(&snap, "product-crm-page"), Some(pts(3.0)));
    assert_eq!(contribution(&snap, "careers-page"), Some(pts(-10.0)));
    assert_eq!(snap.behaviour, pts(20.0));
    assert_eq!(snap.contributions[0].rule_id, "pricing-page");
    // Temperature counts positive points only: 1 + 25 + 3 + 1.
    assert_eq!(snap.recent_points, pts(30.0));
    assert_eq!(snap.temperature, Temperature::Hot);
    assert_eq!(snap.top_events[0].event_id, "e1");
    assert_eq!(snap.top_events[0].points_now, pts(29.0));
    assert_eq!(snap.top_events[1].event_id, "e2");
    assert_eq!(snap.top_events[1].points_now, pts(-9.0));
}

#[test]
fn fit_rules_compare_case_insensitively() {
    let m = ScoringModel::example();
    let fit = FitProfile {
        job_title: Some("  Head of IT ".into()),
        company_size: Some("201-1000".into()),
        country: Some("de".into()),
        email_domain: Some("GMX.de".into()),
        industry: Some("Software Development".into()),
        ..FitProfile::default()
    };
    let s = ScoreState::default().snapshot(&m, &fit, at("2026-01-01T00:00:00Z"));
    let ids: BTreeSet<&str> = s.contributions.iter().map(|c| c.rule_id.as_str()).collect();
    // industry uses `in`: "software development" is not "software".
    assert_eq!(
        ids,
        BTreeSet::from(["decision-maker", "target-company-size", "dach", "free-mail"])
    );
    assert_eq!(s.fit, pts(35.0));
    assert_eq!(s.grade, Grade::B);
    assert!(s
        .contributions
        .iter()
        .all(|c| c.kind == ContributionKind::Fit));
    assert_eq!(s.score, s.fit);
}

#[test]
fn fit_profile_of_a_lead_takes_the_email_domain() {
    let lead: crate::Lead = serde_json::from_value(serde_json::json!({
        "id": "0190d2a4-0000-7000-8000-000000000001",
        "email": "anna@acme.de",
        "stage": "Inquiry",
        "company": "ACME",
        "job_title": "CTO",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "version": 1
    }))
    .unwrap();
    let fit = lead.fit_profile();
    assert_eq!(fit.get(LeadField::EmailDomain), Some("acme.de"));
    assert_eq!(fit.get(LeadField::Company), Some("ACME"));
    assert_eq!(fit.get(LeadField::Phone), None);
}

#[test]
fn mql_needs_score_and_the_demographic_minimum() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    for (i, day) in ["02", "03", "04"].iter().enumerate() {
        s.apply(
            &m,
            &ev(
                &format!("w{i}"),
                "webinar_attended",
                &format!("2026-03-{day}T09:00:00Z"),
                None,
                &[],
            ),
        );
    }
    let now = at("2026-03-04T09:00:00Z");
    let strong = FitProfile {
        job_title: Some("CEO".into()),
        company_size: Some("51-200".into()),
        country: Some("AT".into()),
        company: Some("ACME".into()),
        ..FitProfile::default()
    };
    let snap = s.snapshot(&m, &strong, now);
    assert_eq!(snap.grade, Grade::A);
    assert_eq!(snap.band, ScoreBand::Mql);
    assert!(snap.meets_mql_minimum && snap.is_mql() && snap.is_engaged());

    let no_contact = FitProfile {
        company: None,
        ..strong.clone()
    };
    let snap = s.snapshot(&m, &no_contact, now);
    assert_eq!(snap.band, ScoreBand::Mql);
    assert!(!snap.meets_mql_minimum && !snap.is_mql());

    let weak = FitProfile {
        company: Some("ACME".into()),
        ..FitProfile::default()
    };
    let snap = s.snapshot(&m, &weak, now);
    assert_eq!(snap.grade, Grade::C);
    assert!(!snap.is_mql(), "grade C is below the minimum B");
}

#[test]
fn products_adjust_points_and_thresholds_by_interest() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    let pricing = |id: &str, when: &str, tags: &[&str]| {
        ev(id, "page_view", when, Some("https://acme.de/pricing"), tags)
    };
    s.apply(&m, &pricing("p1", "2026-03-02T09:00:00Z", &[]));
    let now = at("2026-03-02T09:00:00Z");
    let snap = s.snapshot(&m, &FitProfile::default(), now);
    assert_eq!(snap.product, None);
    assert_eq!(contribution(&snap, "pricing-page"), Some(pts(15.0)));

    s.apply(
        &m,
        &ev(
            "d1",
            "download",
            "2026-03-01T09:00:00Z",
            None,
            &["analytics"],
        ),
    );
    s.apply(
        &m,
        &ev("v1", "page_view", "2026-03-01T10:00:00Z", None, &["crm"]),
    );
    s.apply(
        &m,
        &ev("v2", "page_view", "2026-03-01T11:00:00Z", None, &["crm"]),
    );
    let snap = s.snapshot(&m, &FitProfile::default(), now);
    assert_eq!(
        snap.product.as_deref(),
        Some("crm"),
        "two crm events weigh more"
    );
    assert_eq!(contribution(&snap, "pricing-page"), Some(pts(25.0)));

    // Three fresh BI events outweigh them: the lead becomes an analytics lead.
    for i in 0..3 {
        s.apply(
            &m,
            &ev(
                &format!("a{i}"),
                "email_open",
                "2026-03-02T08:00:00Z",
                None,
                &["BI"],
            ),
        );
    }
    let snap = s.snapshot(&m, &FitProfile::default(), now);
    assert_eq!(snap.product.as_deref(), Some("analytics"));
    assert_eq!(contribution(&snap, "pricing-page"), Some(pts(15.0)));
    assert_eq!(
        contribution(&snap, "whitepaper-download"),
        Some(Points::round(25.0 * 0.5f64.powf(1.0 / 30.0)))
    );
    let interests = s.interests(&m, now);
    assert!(interests["bi"] > interests["crm"]);
    assert!(interests["crm"] > interests["analytics"]);
}

#[test]
fn product_thresholds_set_the_band() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    // 55 points of behaviour with CRM interest: MQL for crm (50), not for the base model (60).
    s.apply(
        &m,
        &ev(
            "w1",
            "webinar_attended",
            "2026-03-02T09:00:00Z",
            None,
            &["crm"],
        ),
    );
    s.apply(
        &m,
        &ev(
            "w2",
            "webinar_registered",
            "2026-03-02T09:00:00Z",
            None,
            &[],
        ),
    );
    s.apply(
        &m,
        &ev("w3", "email_click", "2026-03-02T09:00:00Z", None, &[]),
    );
    s.apply(&m, &ev("w4", "download", "2026-03-02T09:00:00Z", None, &[]));
    let snap = s.snapshot(&m, &FitProfile::default(), at("2026-03-02T09:00:00Z"));
    assert_eq!(snap.product.as_deref(), Some("crm"));
    assert_eq!(snap.score, pts(65.0)); // 30 + 10 + 5 + 20
    assert_eq!(snap.band, ScoreBand::Mql);
    let mut base = ScoreState::default();
    base.apply(
        &m,
        &ev("x1", "webinar_attended", "2026-03-02T09:00:00Z", None, &[]),
    );
    base.apply(
        &m,
        &ev("x2", "email_click", "2026-03-02T09:00:00Z", None, &[]),
    );
    base.apply(&m, &ev("x3", "download", "2026-03-02T09:00:00Z", None, &[]));
    let snap = base.snapshot(&m, &FitProfile::default(), at("2026-03-02T09:00:00Z"));
    assert_eq!(snap.score, pts(50.0));
    assert_eq!(snap.band, ScoreBand::Engaged);
}

// ---------------------------------------------------------------------------------------------
// Decay, caps, time

#[test]
fn behaviour_decays_by_half_life_and_future_events_do_not_count() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    s.apply(
        &m,
        &ev(
            "p1",
            "page_view",
            "2026-03-01T00:00:00Z",
            Some("https://x.de/pricing"),
            &[],
        ),
    );
    s.apply(&m, &ev("d1", "download", "2026-04-01T00:00:00Z", None, &[]));
    let fit = FitProfile::default();
    // page_view half-life 14 days: after 14 days 16 → 8.
    let snap = s.snapshot(&m, &fit, at("2026-03-15T00:00:00Z"));
    assert_eq!(snap.behaviour, pts(8.0), "{snap:?}");
    assert_eq!(
        contribution(&snap, "whitepaper-download"),
        None,
        "d1 lies ahead"
    );
    let snap = s.snapshot(&m, &fit, at("2026-03-29T00:00:00Z"));
    assert_eq!(snap.behaviour, pts(4.0));
    // download half-life 30 days.
    let snap = s.snapshot(&m, &fit, at("2026-05-01T00:00:00Z"));
    assert_eq!(contribution(&snap, "whitepaper-download"), Some(pts(10.0)));
    assert_eq!(snap.temperature, Temperature::Cold);
}

#[test]
fn caps_count_the_latest_events_of_a_bucket_whatever_the_order() {
    let m = ScoringModel::example();
    let view = |i: u32, hour: u32| {
        ev(
            &format!("v{i}"),
            "page_view",
            &format!("2026-03-02T{hour:02}:00:00Z"),
            Some("https://acme.de/pricing"),
            &[],
        )
    };
    let mut s = ScoreState::default();
    for (i, hour) in [(1, 9), (2, 10), (3, 11)] {
        let a = s.apply(&m, &view(i, hour));
        assert!(a.rules.iter().all(|r| r.outcome == RuleOutcome::Counted));
    }
    // Earlier than all three counted: capped for pricing-page (3 a day), counted for page-view (5).
    let a = s.apply(&m, &view(4, 8));
    let outcome = |a: &Applied, id: &str| {
        a.rules
            .iter()
            .find(|r| r.rule_id == id)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(outcome(&a, "pricing-page"), RuleOutcome::Capped);
    assert_eq!(outcome(&a, "page-view"), RuleOutcome::Counted);
    // Later: replaces the earliest counted (v1 at 09:00).
    let a = s.apply(&m, &view(5, 12));
    assert_eq!(
        outcome(&a, "pricing-page"),
        RuleOutcome::Replaced {
            replaced_event_id: "v1".into()
        }
    );
    // The next day is a new bucket.
    let a = s.apply(
        &m,
        &ev(
            "v6",
            "page_view",
            "2026-03-03T00:00:00Z",
            Some("https://acme.de/pricing"),
            &[],
        ),
    );
    assert_eq!(outcome(&a, "pricing-page"), RuleOutcome::Counted);

    let mut reversed = ScoreState::default();
    for i in [6, 5, 4, 3, 2, 1] {
        let e = if i == 6 {
            ev(
                "v6",
                "page_view",
                "2026-03-03T00:00:00Z",
                Some("https://acme.de/pricing"),
                &[],
            )
        } else {
            view(i, [0, 9, 10, 11, 8, 12][i as usize])
        };
        reversed.apply(&m, &e);
    }
    let now = at("2026-03-03T00:00:00Z");
    let fit = FitProfile::default();
    assert_eq!(s.snapshot(&m, &fit, now), reversed.snapshot(&m, &fit, now));
    // 3 + 1 pricing views count, 5 + 1 page views.
    let snap = s.snapshot(&m, &fit, at("2026-03-02T12:00:00Z"));
    assert_eq!(snap.recent_points, pts(3.0 * 15.0 + 5.0));
}

#[test]
fn weekly_and_monthly_buckets_follow_the_calendar() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    // careers-page: 1 a month. Jan 31 and Feb 1 are different months.
    let careers =
        |id: &str, when: &str| ev(id, "page_view", when, Some("https://acme.de/careers"), &[]);
    s.apply(&m, &careers("c1", "2026-01-31T23:59:59Z"));
    let a = s.apply(&m, &careers("c2", "2026-02-01T00:00:00Z"));
    assert_eq!(a.rules[1].outcome, RuleOutcome::Counted);
    let a = s.apply(&m, &careers("c3", "2026-02-28T23:00:00Z"));
    assert_eq!(
        a.rules[1].outcome,
        RuleOutcome::Replaced {
            replaced_event_id: "c2".into()
        }
    );
    // cart-abandoned: 1 an ISO week. 2026-03-01 is a Sunday, 03-02 a Monday.
    let cart = |id: &str, when: &str| ev(id, "cart_abandoned", when, None, &[]);
    assert_eq!(
        s.apply(&m, &cart("a1", "2026-03-01T12:00:00Z")).rules[0].outcome,
        RuleOutcome::Counted
    );
    assert_eq!(
        s.apply(&m, &cart("a2", "2026-03-02T12:00:00Z")).rules[0].outcome,
        RuleOutcome::Counted
    );
    assert_eq!(
        s.apply(&m, &cart("a3", "2026-02-23T00:00:00Z")).rules[0].outcome,
        RuleOutcome::Capped
    );
}

#[test]
fn duplicates_and_expired_events_change_nothing() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    let e = ev("e1", "download", "2026-03-01T00:00:00Z", None, &["crm"]);
    assert_eq!(s.apply(&m, &e).status, ApplyStatus::Applied);
    let before = s.clone();
    assert_eq!(s.apply(&m, &e).status, ApplyStatus::Duplicate);
    assert_eq!(s, before);
    // 90 days later the horizon passes e1.
    s.apply(&m, &ev("e2", "download", "2026-06-01T00:00:00Z", None, &[]));
    assert!(s.horizon().unwrap() > e.occurred_at);
    let before = s.clone();
    assert_eq!(s.apply(&m, &e).status, ApplyStatus::Expired);
    assert_eq!(s, before);
    // e1 still counts, folded into the rule's decaying sum.
    let snap = s.snapshot(&m, &FitProfile::default(), at("2026-06-01T00:00:00Z"));
    let expected = 20.0 + 20.0 * 0.5f64.powf(92.0 / 30.0);
    assert_eq!(snap.behaviour, Points::round(expected));
    assert_eq!(s.kept_events(), 1);
}

#[test]
fn no_op_events_are_not_kept() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    let a = s.apply(&m, &ev("x", "login", "2026-03-01T00:00:00Z", None, &[]));
    assert_eq!(a.status, ApplyStatus::Applied);
    assert!(a.rules.is_empty() && !a.counted());
    assert_eq!(s.kept_events(), 0);
}

#[test]
fn changed_means_band_grade_or_temperature() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    let fit = FitProfile::default();
    let t0 = at("2026-03-02T09:00:00Z");
    let before = s.snapshot(&m, &fit, t0);
    s.apply(
        &m,
        &ev("e", "email_open", "2026-03-02T09:00:00Z", None, &[]),
    );
    let after = s.snapshot(&m, &fit, t0);
    assert_ne!(before.score, after.score);
    assert!(
        !changed(&before, &after),
        "one point changes nothing anyone sees"
    );
    s.apply(
        &m,
        &ev("w", "webinar_attended", "2026-03-02T09:00:00Z", None, &[]),
    );
    let hot = s.snapshot(&m, &fit, t0);
    assert!(changed(&after, &hot));
    assert_eq!(hot.band, ScoreBand::Engaged);
    let cooled = s.snapshot(&m, &fit, t0 + Duration::days(8));
    assert_eq!(cooled.temperature, Temperature::Cold);
    assert!(changed(&hot, &cooled));
}

#[test]
fn snapshots_and_applied_serialise_in_snake_case() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    let a = s.apply(
        &m,
        &ev(
            "e",
            "page_view",
            "2026-03-02T09:00:00Z",
            Some("https://a.de/pricing"),
            &[],
        ),
    );
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["status"], "applied");
    assert_eq!(json["rules"][1]["rule_id"], "pricing-page");
    assert_eq!(json["rules"][1]["outcome"], "counted");
    let snap = s.snapshot(&m, &FitProfile::default(), at("2026-03-02T09:00:00Z"));
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["temperature"], "warm");
    assert_eq!(json["band"], "low");
    assert_eq!(json["grade"], "C");
    assert_eq!(json["score"], 16);
    assert_eq!(json["contributions"][0]["kind"], "behaviour");
    let back: ScoreSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(back, snap);
}

fn history(n: usize) -> Vec<BehaviourEvent> {
    let start = at("2026-01-01T00:00:00Z");
    let kinds = [
        ("page_view", Some("https://acme.de/blog/post"), &["crm"][..]),
        ("page_view", Some("https://acme.de/pricing"), &[][..]),
        ("email_open", None, &["newsletter"][..]),
        ("email_click", None, &["analytics"][..]),
        ("download", None, &["crm", "whitepaper"][..]),
        (
            "page_view",
            Some("https://acme.de/product/crm"),
            &["crm"][..],
        ),
    ];
    (0..n)
        .map(|i| {
            let (t, url, tags) = kinds[i % kinds.len()];
            BehaviourEvent {
                event_id: format!("0190d2a4-{i:04}-7000-8000-000000000001"),
                event_type: t.into(),
                occurred_at: start + Duration::minutes(((i * 7919) % (60 * 24 * 60)) as i64),
                url: url.map(Into::into),
                tags: tags.iter().map(|s| s.to_string()).collect(),
            }
        })
        .collect()
}

#[test]
fn state_round_trips_through_json_and_stays_small() {
    let m = ScoringModel::example();
    let events = history(2000);
    let mut s = ScoreState::default();
    for e in &events {
        s.apply(&m, e);
    }
    assert!(
        s.kept_events() <= MAX_KEPT_EVENTS + 64,
        "{}",
        s.kept_events()
    );
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.len() < 48_000, "{} bytes", json.len());
    // serde_json parses floats to within one unit in the last place (exactly with its
    // `float_roundtrip` feature; serde_dynamo's numbers are exact): compare what they give.
    let back: ScoreState = serde_json::from_str(&json).unwrap();
    let (fit, now) = (FitProfile::default(), s.newest().unwrap());
    assert_eq!(back.snapshot(&m, &fit, now), s.snapshot(&m, &fit, now));
    assert_eq!(back.kept_events(), s.kept_events());
    let small = ScoreState::rescore(&m, &events[..20]);
    let json = serde_json::to_string(&small).unwrap();
    assert!(json.len() < 2_500, "{} bytes: {json}", json.len());
}

#[test]
fn rescore_is_applying_in_time_order() {
    let m = ScoringModel::example();
    let events = history(300);
    let rescored = ScoreState::rescore(&m, events.iter().rev());
    let mut sorted: Vec<&BehaviourEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.occurred_at, e.event_id.clone()));
    let mut s = ScoreState::default();
    for e in sorted {
        s.apply(&m, e);
    }
    assert_eq!(rescored, s);
}

#[test]
fn many_tags_keep_the_strongest() {
    let m = ScoringModel::example();
    let mut s = ScoreState::default();
    for i in 0..100 {
        s.apply(
            &m,
            &ev(
                &format!("e{i}"),
                "email_open",
                "2026-03-02T09:00:00Z",
                None,
                &[&format!("t{i}")],
            ),
        );
    }
    for _ in 0..3 {
        s.apply(
            &m,
            &ev("strong", "download", "2026-03-02T10:00:00Z", None, &["crm"]),
        );
    }
    let interests = s.interests(&m, at("2026-03-02T10:00:00Z"));
    assert!(interests.len() <= MAX_TAGS);
    assert_eq!(interests["crm"], 1.0);
}

// ---------------------------------------------------------------------------------------------
// Properties, against a brute-force reference

/// A model with the example's shape and generated points, caps and half-lives.
fn model_yaml(
    points: &[i32],
    caps: &[Option<(u32, u8)>],
    page_view_half_life: u32,
    positive: bool,
) -> String {
    let rules = [
        ("page-view", "page_view", ""),
        ("pricing-page", "page_view", "url: \"*/pricing*\", "),
        ("crm-page", "page_view", "tags_any: [crm], "),
        ("careers-page", "page_view", "url: \"*/CAREERS*\", "),
        ("download", "download", ""),
        ("webinar", "webinar_attended", ""),
        ("email-open", "email_open", "tags_any: [newsletter, crm], "),
        ("unsubscribed", "unsubscribed", ""),
    ];
    let mut yaml = format!(
        "scoring:\n  thresholds: {{ engaged: 20, mql: 60 }}\n  decay: {{ default_half_life_days: 30, by_event_type: {{ page_view: {page_view_half_life}, email_open: 7 }} }}\n  interest_half_life_days: 21\n  behaviour:\n"
    );
    for (i, (id, t, extra)) in rules.iter().enumerate() {
        let p = if positive { points[i].abs() } else { points[i] };
        let cap = match caps[i] {
            Some((n, per)) => format!(
                ", cap: {{ count: {n}, per: {} }}",
                ["day", "week", "month"][per as usize]
            ),
            None => String::new(),
        };
        yaml += &format!("    - {{ id: {id}, event_type: {t}, {extra}points: {p}{cap} }}\n");
    }
    yaml += "  fit:\n    - { id: boss, field: job_title, contains_any: [ceo], points: 20 }\n";
    yaml += "  products:\n    - { id: crm, tags_any: [crm], points: { pricing-page: 30, download: 5 } }\n    - { id: analytics, tags_any: [analytics], points: { webinar: 40 } }\n";
    yaml
}

fn arb_model(positive: bool) -> impl Strategy<Value = ScoringModel> {
    (
        prop::collection::vec(-30i32..=40, 8),
        prop::collection::vec(prop::option::weighted(0.6, (1u32..=3, 0u8..3)), 8),
        1u32..=30,
    )
        .prop_map(move |(points, caps, hl)| {
            parse(&model_yaml(&points, &caps, hl, positive)).expect("generated model is valid")
        })
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn arb_event(i: usize) -> impl Strategy<Value = BehaviourEvent> {
    let kind = prop_oneof![
        4 => Just("page_view"),
        1 => Just("download"),
        1 => Just("webinar_attended"),
        2 => Just("email_open"),
        1 => Just("unsubscribed"),
        1 => Just("login"),
    ];
    let url = prop_oneof![
        Just(None),
        Just(Some("https://acme.de/pricing")),
        Just(Some("https://acme.de/Pricing?plan=pro")),
        Just(Some("https://acme.de/careers")),
        Just(Some("https://acme.de/blog/crm")),
    ];
    let tags = prop::sample::subsequence(vec!["crm", "analytics", "newsletter", "Erp"], 0..=2);
    // Half the events crowd into a few days, so caps bite; all lie within 60 days.
    let day = prop_oneof![0i64..4, 0i64..60];
    let ms = 0i64..86_400_000;
    (kind, url, tags, day, ms).prop_map(move |(kind, url, tags, day, ms)| BehaviourEvent {
        event_id: format!("e{i:03}"),
        event_type: kind.into(),
        occurred_at: DateTime::from_timestamp_millis(T0 + day * 86_400_000 + ms).unwrap(),
        url: url.map(Into::into),
        tags: tags.into_iter().map(Into::into).collect(),
    })
}

fn arb_events(max: usize) -> impl Strategy<Value = Vec<BehaviourEvent>> {
    (1..max).prop_flat_map(|n| (0..n).map(arb_event).collect::<Vec<_>>())
}

/// Events with duplicates, in a random order, and the same multiset in another random order.
fn arb_deliveries(
    max: usize,
) -> impl Strategy<
    Value = (
        Vec<BehaviourEvent>,
        Vec<BehaviourEvent>,
        Vec<BehaviourEvent>,
    ),
> {
    arb_events(max)
        .prop_flat_map(|events| {
            let n = events.len();
            (Just(events), prop::collection::vec(0..n, 0..n.min(20) + 1))
        })
        .prop_flat_map(|(events, dups)| {
            let mut all = events.clone();
            all.extend(dups.iter().map(|&i| events[i].clone()));
            (
                Just(events),
                Just(all.clone()).prop_shuffle(),
                Just(all).prop_shuffle(),
            )
        })
}

fn fold_all(model: &ScoringModel, events: &[BehaviourEvent]) -> ScoreState {
    let mut s = ScoreState::default();
    for e in events {
        s.apply(model, e);
    }
    s
}

/// The UTC calendar bucket of a cap, computed independently of the engine.
fn bucket_key(per: CapPeriod, t: DateTime<Utc>) -> (i32, u32, u32) {
    let d = t.date_naive();
    match per {
        CapPeriod::Day => (d.year(), d.month(), d.day()),
        CapPeriod::Week => (d.iso_week().year(), d.iso_week().week(), 0),
        CapPeriod::Month => (d.year(), d.month(), 0),
    }
}

/// The exact score by definition: per rule, the counted events (the `count` latest per cap
/// bucket, by time then id) that occurred at or before `at`, decayed; points of the product
/// the interests point to. Returns unrounded behaviour per rule id, and the product.
fn reference(
    model: &ScoringModel,
    events: &[BehaviourEvent],
    at: DateTime<Utc>,
) -> (BTreeMap<String, f64>, Option<usize>) {
    let mut unique: BTreeMap<&str, &BehaviourEvent> = BTreeMap::new();
    for e in events {
        unique.insert(&e.event_id, e);
    }
    let x = at.timestamp_millis();
    let decay = |t: DateTime<Utc>, hl_days: f64| {
        (-((x - t.timestamp_millis()) as f64) / (hl_days * 86_400_000.0)).exp2()
    };
    let mut interest: BTreeMap<String, f64> = BTreeMap::new();
    for e in unique.values().filter(|e| e.occurred_at <= at) {
        let tags: BTreeSet<String> = e.tags.iter().map(|t| t.to_lowercase()).collect();
        for t in tags {
            *interest.entry(t).or_default() +=
                decay(e.occurred_at, model.interest_half_life().as_days());
        }
    }
    let product = model.product_for(|t| interest.get(t.as_str()).copied().unwrap_or(0.0));
    let mut out = BTreeMap::new();
    for (i, rule) in model.behaviour().iter().enumerate() {
        let mut matching: Vec<&BehaviourEvent> = unique
            .values()
            .copied()
            .filter(|e| {
                let tags: Vec<Tag> = e.tags.iter().filter_map(|t| Tag::parse(t).ok()).collect();
                rule.matches(
                    &e.event_type,
                    e.url.as_ref().map(|u| u.to_lowercase()).as_deref(),
                    &tags,
                )
            })
            .collect();
        if let Some(cap) = rule.cap {
            let mut by_bucket: BTreeMap<(i32, u32, u32), Vec<&BehaviourEvent>> = BTreeMap::new();
            for e in matching {
                by_bucket
                    .entry(bucket_key(cap.per, e.occurred_at))
                    .or_default()
                    .push(e);
            }
            matching = Vec::new();
            for (_, mut es) in by_bucket {
                es.sort_by(|a, b| (b.occurred_at, &b.event_id).cmp(&(a.occurred_at, &a.event_id)));
                matching.extend(es.into_iter().take(cap.count as usize));
            }
        }
        let hl = model.decay().half_life(&rule.event_type).as_days();
        let sum: f64 = matching
            .iter()
            .filter(|e| e.occurred_at <= at)
            .map(|e| decay(e.occurred_at, hl))
            .sum();
        if sum > 0.0 {
            out.insert(rule.id.to_string(), model.points(i, product).as_f64() * sum);
        }
    }
    (out, product)
}

fn arb_at() -> impl Strategy<Value = DateTime<Utc>> {
    // From before the first event to well after the last.
    (-2i64..90, 0i64..86_400_000)
        .prop_map(|(d, ms)| DateTime::from_timestamp_millis(T0 + d * 86_400_000 + ms).unwrap())
}

fn fit_strategy() -> impl Strategy<Value = FitProfile> {
    prop::option::of(prop_oneof![Just("CEO"), Just("Engineer")]).prop_map(|t| FitProfile {
        job_title: t.map(Into::into),
        ..FitProfile::default()
    })
}

/// 96 cases, or `PROPTEST_CASES` when set (for a long run).
fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        default.cases
    } else {
        96
    };
    ProptestConfig { cases, ..default }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_score_is_the_reference_score(
        model in arb_model(false),
        (events, delivered, _) in arb_deliveries(120),
        at in arb_at(),
        fit in fit_strategy(),
    ) {
        let s = fold_all(&model, &delivered);
        let snap = s.snapshot(&model, &fit, at);
        let (expected, product) = reference(&model, &events, at);
        prop_assert_eq!(snap.product.clone(), product.map(|p| model.products()[p].id.to_string()));
        for (id, value) in &expected {
            let got = contribution(&snap, id).unwrap_or(Points::ZERO).as_f64();
            prop_assert!((got - value).abs() <= 0.005 + 1e-9, "{}: {} vs {}", id, got, value);
        }
        for c in snap.contributions.iter().filter(|c| c.kind == ContributionKind::Behaviour) {
            prop_assert!(expected.contains_key(&c.rule_id), "{} is not in the reference", c.rule_id);
        }
    }

    #[test]
    fn the_explanation_sums_exactly_to_the_score(
        model in arb_model(false),
        (_, delivered, _) in arb_deliveries(120),
        at in arb_at(),
        fit in fit_strategy(),
    ) {
        let snap = fold_all(&model, &delivered).snapshot(&model, &fit, at);
        let total: Points = snap.contributions.iter().map(|c| c.points).sum();
        prop_assert_eq!(total, snap.score);
        prop_assert_eq!(snap.behaviour + snap.fit, snap.score);
        let fit_sum: Points = snap.contributions.iter().filter(|c| c.kind == ContributionKind::Fit).map(|c| c.points).sum();
        prop_assert_eq!(fit_sum, snap.fit);
        prop_assert!(snap.contributions.windows(2).all(|w| w[0].points.abs() >= w[1].points.abs()));
        prop_assert!(snap.contributions.iter().all(|c| c.points != Points::ZERO));
        prop_assert!(snap.top_events.len() <= TOP_EVENTS);
        prop_assert!(snap.top_events.windows(2).all(|w| w[0].points_now.abs() >= w[1].points_now.abs()));
    }

    #[test]
    fn the_order_of_arrival_does_not_change_the_score(
        model in arb_model(false),
        (_, one, other) in arb_deliveries(120),
        at in arb_at(),
        fit in fit_strategy(),
    ) {
        let a = fold_all(&model, &one).snapshot(&model, &fit, at);
        let b = fold_all(&model, &other).snapshot(&model, &fit, at);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn applying_an_event_twice_is_applying_it_once(
        model in arb_model(false),
        events in arb_events(80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut once = fold_all(&model, &events);
        let e = pick.get(&events);
        let before = once.clone();
        once.apply(&model, e);
        prop_assert_eq!(&once, &before);
        // Immediately twice, too.
        let mut twice = ScoreState::default();
        for e in &events {
            twice.apply(&model, e);
            twice.apply(&model, e);
        }
        prop_assert_eq!(twice, before);
    }

    #[test]
    fn caps_hold_in_every_bucket(
        model in arb_model(false),
        (_, delivered, _) in arb_deliveries(150),
    ) {
        let s = fold_all(&model, &delivered);
        for (i, rule) in model.behaviour().iter().enumerate() {
            let Some(cap) = rule.cap else { continue };
            let mut per_bucket: BTreeMap<(i32, u32, u32), u32> = BTreeMap::new();
            for t in s.counted_times(&model, i) {
                *per_bucket.entry(bucket_key(cap.per, t)).or_default() += 1;
            }
            for (bucket, n) in per_bucket {
                prop_assert!(n <= cap.count, "{}: {} in {:?}, cap {}", rule.id, n, bucket, cap.count);
            }
        }
    }

    #[test]
    fn scores_of_positive_rules_only_fall_as_time_passes(
        model in arb_model(true),
        events in arb_events(120),
        steps in prop::collection::vec(0i64..20 * 86_400_000, 1..6),
    ) {
        let s = fold_all(&model, &events);
        let fit = FitProfile::default();
        let mut t = s.newest().unwrap();
        let mut last = s.snapshot(&model, &fit, t);
        for step in steps {
            t += Duration::milliseconds(step);
            let now = s.snapshot(&model, &fit, t);
            prop_assert!(now.behaviour <= last.behaviour, "{} then {}", last.behaviour, now.behaviour);
            for c in &now.contributions {
                let before = last.contributions.iter().find(|p| p.rule_id == c.rule_id).map(|p| p.points);
                prop_assert!(before.is_some_and(|b| c.points <= b));
            }
            last = now;
        }
    }

    #[test]
    fn interests_are_non_negative_and_decay(
        model in arb_model(false),
        events in arb_events(120),
        step in 1i64..30 * 86_400_000,
    ) {
        let s = fold_all(&model, &events);
        let t = s.newest().unwrap();
        let now = s.interests(&model, t);
        let later = s.interests(&model, t + Duration::milliseconds(step));
        for (tag, w) in &now {
            prop_assert!(*w > 0.0);
            let l = later.get(tag).copied().unwrap_or(0.0);
            prop_assert!(l >= 0.0 && l <= *w, "{}: {} then {}", tag, w, l);
        }
        let mut reference: BTreeMap<String, f64> = BTreeMap::new();
        for e in &events {
            for tag in e.tags.iter().map(|t| t.to_lowercase()).collect::<BTreeSet<_>>() {
                *reference.entry(tag).or_default() += (-((t - e.occurred_at).num_milliseconds() as f64) / (21.0 * 86_400_000.0)).exp2();
            }
        }
        prop_assert_eq!(now.len(), reference.len());
        for (tag, w) in reference {
            prop_assert!((now[&tag] - w).abs() < 1e-9, "{}: {} vs {}", tag, now[&tag], w);
        }
    }

    #[test]
    fn a_long_history_past_the_horizon_matches_the_reference(
        model in arb_model(false),
        days in prop::collection::vec((0i64..400, 0i64..86_400_000, 0usize..6), 1..200),
    ) {
        // Events over more than a year, applied in time order (as a rescore does): folded
        // into the decaying sums as the horizon passes them, still exact.
        let kinds = ["page_view", "download", "webinar_attended", "email_open", "unsubscribed", "page_view"];
        let events: Vec<BehaviourEvent> = days
            .iter()
            .enumerate()
            .map(|(i, (d, ms, k))| BehaviourEvent {
                event_id: format!("h{i:03}"),
                event_type: kinds[*k].into(),
                occurred_at: DateTime::from_timestamp_millis(T0 + d * 86_400_000 + ms).unwrap(),
                url: (*k == 5).then(|| "https://acme.de/pricing".into()),
                tags: if k % 2 == 0 { vec!["crm".into()] } else { vec!["newsletter".into()] },
            })
            .collect();
        let s = ScoreState::rescore(&model, &events);
        let at = s.newest().unwrap() + Duration::days(3);
        let snap = s.snapshot(&model, &FitProfile::default(), at);
        let (expected, _) = reference(&model, &events, at);
        for (id, value) in &expected {
            let got = contribution(&snap, id).unwrap_or(Points::ZERO).as_f64();
            prop_assert!((got - value).abs() <= 0.005 + 1e-6, "{}: {} vs {}", id, got, value);
        }
    }
}
