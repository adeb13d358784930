//! The pure scoring of one event: `apply` on a lead with a realistic history, then `snapshot`.
//!
//! `cargo bench -p leadflow-domain --bench scoring -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadflow_domain::scoring::{BehaviourEvent, FitProfile, ScoreState, ScoringModel};

const KINDS: [(&str, Option<&str>, &[&str]); 8] = [
    (
        "page_view",
        Some("https://www.acme.de/blog/crm-for-sales-teams"),
        &["crm"],
    ),
    (
        "page_view",
        Some("https://www.acme.de/pricing?plan=pro"),
        &[],
    ),
    (
        "page_view",
        Some("https://www.acme.de/product/analytics"),
        &["analytics", "bi"],
    ),
    ("email_open", None, &["newsletter"]),
    ("email_click", None, &["newsletter", "crm"]),
    (
        "download",
        Some("https://www.acme.de/whitepaper/crm.pdf"),
        &["crm", "whitepaper"],
    ),
    ("page_view", Some("https://www.acme.de/"), &[]),
    ("webinar_registered", None, &["crm"]),
];

fn event(i: usize, at: DateTime<Utc>) -> BehaviourEvent {
    let (event_type, url, tags) = KINDS[i % KINDS.len()];
    BehaviourEvent {
        event_id: format!("0190d2a4-{:04x}-7000-8000-{:012x}", i % 0xffff, i),
        event_type: event_type.into(),
        occurred_at: at,
        url: url.map(Into::into),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn start() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// 200 events over 60 days, a few bursts a day, in order.
fn history(n: usize) -> Vec<BehaviourEvent> {
    (0..n)
        .map(|i| {
            let minutes = (i as i64 * 60 * 24 * 60) / n as i64 + (i as i64 % 7) * 3;
            event(i, start() + Duration::minutes(minutes))
        })
        .collect()
}

fn fit() -> FitProfile {
    FitProfile {
        job_title: Some("Head of Sales".into()),
        company_size: Some("51-200".into()),
        industry: Some("software".into()),
        country: Some("DE".into()),
        email_domain: Some("acme-customer.de".into()),
        company: Some("Customer GmbH".into()),
        ..FitProfile::default()
    }
}

fn bench(c: &mut Criterion) {
    let model = ScoringModel::example();
    let base = ScoreState::rescore(&model, &history(200));
    let fit = fit();
    let last = base.newest().unwrap();
    let next = event(1_000_001, last + Duration::minutes(5));
    let now = last + Duration::minutes(5);

    // Spacing of a steady stream that keeps about 200 events within the 90-day retention.
    let spacing = Duration::minutes(90 * 24 * 60 / 200);
    // A deterministic jitter of up to 14 days back: out-of-order delivery.
    let jitter = |i: usize| Duration::minutes(((i * 7_919) % (14 * 24 * 60)) as i64);
    let stream = |iters: u64, late: bool| -> Vec<BehaviourEvent> {
        (0..iters as usize)
            .map(|i| {
                let at = last + spacing * (i as i32 + 1);
                event(2_000_000 + i, if late { at - jitter(i) } else { at })
            })
            .collect()
    };

    let mut g = c.benchmark_group("scoring");
    g.throughput(Throughput::Elements(1));
    g.bench_function("apply, in order (200 kept events, 12 rules)", |b| {
        b.iter_custom(|iters| {
            let mut s = base.clone();
            let events = stream(iters, false);
            let t = Instant::now();
            for e in &events {
                black_box(s.apply(&model, e));
            }
            t.elapsed()
        })
    });
    g.bench_function("apply, out of order (up to 14 days late)", |b| {
        b.iter_custom(|iters| {
            let mut s = base.clone();
            let events = stream(iters, true);
            let t = Instant::now();
            for e in &events {
                black_box(s.apply(&model, e));
            }
            t.elapsed()
        })
    });
    g.bench_function("apply to a fresh copy of the state (copy not timed)", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |s| black_box(s.apply(&model, black_box(&next))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apply, duplicate", |b| {
        let mut s = base.clone();
        s.apply(&model, &next);
        b.iter(|| black_box(s.apply(&model, black_box(&next))))
    });
    g.bench_function("snapshot (200 kept events)", |b| {
        let mut s = base.clone();
        s.apply(&model, &next);
        b.iter(|| black_box(s.snapshot(&model, &fit, black_box(now))))
    });
    g.bench_function("apply + snapshot, in order", |b| {
        b.iter_custom(|iters| {
            let mut s = base.clone();
            let events = stream(iters, false);
            let t = Instant::now();
            for e in &events {
                black_box(s.apply(&model, e));
                black_box(s.snapshot(&model, &fit, e.occurred_at));
            }
            t.elapsed()
        })
    });
    g.finish();

    let json = serde_json::to_string(&base).unwrap();
    eprintln!(
        "state after 200 events: {} kept events, {} bytes of JSON",
        base.kept_events(),
        json.len()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(StdDuration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
