//! Routing on the emulator: rules, the default pool, partners, staging and fast track, leave and
//! caps, and fairness of the weighted round-robin under concurrency.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use futures::StreamExt;
use leadflow_aws::dynamo::DynamoStore;
use leadflow_aws::eventbridge::EventBridgePublisher;
use leadflow_domain::assignment::AssignedTo;
use leadflow_domain::ports::{ConfigStore, LeadStore};
use leadflow_domain::scoring::{Grade, Temperature};
use leadflow_domain::{Lead, LeadId};
use leadflow_lambda::active_config::ActiveConfig;
use route::Route;

use crate::support::{mql, TestApp};

/// config/leadflow.yaml's scoring model with the routing section given.
fn config_with_routing(routing: &str) -> String {
    let scoring = crate::support::example_scoring();
    format!("{scoring}\nrouting:\n{routing}")
}

async fn app_with(routing: &str) -> (TestApp, Route<DynamoStore, EventBridgePublisher>) {
    let app = TestApp::spawn_with(&["ConfigCacheSeconds=0"]).await;
    app.store()
        .push(
            &config_with_routing(routing),
            Some("test routing"),
            Utc::now(),
        )
        .await
        .expect("valid config");
    let route = Route::new(
        app.store(),
        EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus")),
        ActiveConfig::new(app.store(), std::time::Duration::ZERO),
    );
    (app, route)
}

fn owner_of(lead: &Lead) -> String {
    match &lead.assignment.as_ref().expect("assigned").assigned_to {
        AssignedTo::Owner { id, .. }
        | AssignedTo::ManagerQueue { id, .. }
        | AssignedTo::Partner { id, .. } => id.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_leads_share_out_by_weight_and_none_twice() {
    let (app, route) = app_with(
        r#"  default_pool: team
  owners:
    - { id: anna, name: Anna, email: anna@example.com, weight: 1 }
    - { id: ben, name: Ben, email: ben@example.com, weight: 2 }
    - { id: cem, name: Cem, email: cem@example.com, weight: 1 }
  pools:
    - { id: team, members: [anna, ben, cem] }
"#,
    )
    .await;
    let leads: Vec<LeadId> = futures::stream::iter(0..1000)
        .map(|i| {
            let app = &app;
            async move {
                mql(
                    app,
                    &format!("lead{i}@example.com"),
                    &[],
                    Grade::B,
                    Temperature::Warm,
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // Every lead routed at once, and each a second time (a redelivered LeadQualified).
    let now = Utc::now();
    let results: Vec<_> = futures::stream::iter(leads.iter().chain(leads.iter()))
        .map(|id| route.route(*id, now))
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );

    let store = app.store();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in &leads {
        *counts
            .entry(owner_of(&store.get(*id).await.unwrap().unwrap()))
            .or_default() += 1;
    }
    // The issue allows ±1 %; the atomic turn counter makes it exact.
    assert_eq!(
        counts,
        BTreeMap::from([
            ("anna".into(), 250),
            ("ben".into(), 500),
            ("cem".into(), 250)
        ])
    );
    let routed = app.drain("CrmWebhookQueue").await;
    assert_eq!(
        routed
            .iter()
            .filter(|e| e["detail-type"] == "LeadRouted")
            .count(),
        1000,
        "one LeadRouted per lead, none twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_partners_staging_leave_caps_and_the_default_pool() {
    let today = Utc::now().date_naive();
    let (app, route) = app_with(&format!(
        r#"  default_pool: inside
  owners:
    - {{ id: anna, name: Anna, email: anna@example.com, manager: maria, daily_cap: 1 }}
    - {{ id: ben, name: Ben, email: ben@example.com, manager: maria, absences: [{{ from: {today}, to: {to} }}] }}
    - {{ id: cem, name: Cem, email: cem@example.com, manager: maria }}
    - {{ id: maria, name: Maria, email: maria@example.com }}
    - {{ id: dora, name: Dora, email: dora@example.com, manager: maria, territories: [FR-75] }}
    - {{ id: emil, name: Emil, email: emil@example.com, manager: maria, territories: [FR-13] }}
  partners:
    - {{ id: reseller-at, name: Alpen IT, crm: {{ endpoint: "https://partner.example.at/leads", secret: "env:PARTNER_AT" }} }}
  pools:
    - {{ id: austria, partner: reseller-at, sla: {{ accept_within_hours: 48 }} }}
    - {{ id: enterprise, members: [cem], staging_manager: maria }}
    - {{ id: dach, members: [anna, ben], sla: {{ accept_within_hours: 24 }} }}
    - {{ id: inside, members: [cem] }}
    - {{ id: france, members: [dora, emil] }}
  rules:
    - {{ id: austria, countries: [AT], pool: austria }}
    - {{ id: enterprise, grades: [A], pool: enterprise }}
    - {{ id: germany, countries: [DE], pool: dach }}
    - {{ id: france, countries: [FR], pool: france }}
"#,
        to = today + chrono::Days::new(3)
    ))
    .await;
    let store = app.store();
    let now = Utc::now();
    let (route, store) = (&route, &store);
    let routed = |id| async move {
        route.route(id, now).await.unwrap();
        store
            .get(id)
            .await
            .unwrap()
            .unwrap()
            .assignment
            .expect("assigned")
    };
    let at = mql(
        &app,
        "a@firma.at",
        &[("country", "AT")],
        Grade::A,
        Temperature::Warm,
    )
    .await;
    let a = routed(at).await;
    assert_eq!(
        (a.assigned_to, a.rule.as_deref(), a.pool.as_str()),
        (
            AssignedTo::Partner {
                id: "reseller-at".into(),
                name: "Alpen IT".into()
            },
            Some("austria"),
            "austria"
        )
    );
    assert_eq!(a.sla_deadline, now + Duration::hours(48));

    let warm_a = routed(mql(&app, "w@big.com", &[], Grade::A, Temperature::Warm).await).await;
    assert!(
        matches!(warm_a.assigned_to, AssignedTo::ManagerQueue { ref id, .. } if id == "maria"),
        "staged: {warm_a:?}"
    );
    let hot_a = routed(mql(&app, "h@big.com", &[], Grade::A, Temperature::Hot).await).await;
    assert!(
        matches!(hot_a.assigned_to, AssignedTo::Owner { ref id, .. } if id == "cem"),
        "fast track: {hot_a:?}"
    );
    assert!(hot_a.fast_track);

    // dach: ben is on leave, anna takes one lead a day; then the manager's queue.
    let first = routed(
        mql(
            &app,
            "d1@firma.de",
            &[("country", "DE")],
            Grade::B,
            Temperature::Warm,
        )
        .await,
    )
    .await;
    assert!(
        matches!(first.assigned_to, AssignedTo::Owner { ref id, .. } if id == "anna"),
        "{first:?}"
    );
    let second = routed(
        mql(
            &app,
            "d2@firma.de",
            &[("country", "DE")],
            Grade::B,
            Temperature::Warm,
        )
        .await,
    )
    .await;
    assert!(
        matches!(second.assigned_to, AssignedTo::ManagerQueue { ref id, .. } if id == "maria"),
        "anna is full, ben away: {second:?}"
    );

    // france: the turn passes over whoever's territory does not hold the postcode.
    for (n, postcode, owner) in [
        (1, "75001", "dora"),
        (2, "75011", "dora"),
        (3, "13001", "emil"),
        (4, "13008", "emil"),
    ] {
        let fr = routed(
            mql(
                &app,
                &format!("f{n}@firma.fr"),
                &[("country", "FR"), ("postcode", postcode)],
                Grade::B,
                Temperature::Warm,
            )
            .await,
        )
        .await;
        assert!(
            matches!(fr.assigned_to, AssignedTo::Owner { ref id, .. } if id == owner),
            "{postcode}: {fr:?}"
        );
    }

    let other = routed(
        mql(
            &app,
            "x@firma.us",
            &[("country", "US")],
            Grade::C,
            Temperature::Cold,
        )
        .await,
    )
    .await;
    assert_eq!(
        (other.rule, other.pool.as_str()),
        (None, "inside"),
        "no rule: the default pool"
    );
    assert_eq!(
        other.config_version, 1,
        "the routing config pushed for this test"
    );

    let timeline = app.store().timeline(at).await.unwrap();
    let entry = timeline
        .iter()
        .find(|e| e.action == "routed")
        .expect("the assignment is on the timeline");
    assert!(entry
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("rule austria"));
}

/// Parked leads are listed by their lead's shard (`ROUTEWAIT#<NN>`), so an incident that parks
/// every MQL does not write one partition: leads parked in many shards, and one parked before
/// sharding (`ROUTEWAIT`), are all tried again by one tick reading small pages across them.
#[tokio::test(flavor = "multi_thread")]
async fn parked_leads_in_every_shard_are_all_tried_again() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    use leadflow_domain::ports::{sla_shard, RoutingWaits};
    use leadflow_domain::routing::{RoutingWait, WaitReason};
    use sla_tick::{SlaTick, TickSettings};

    let (app, _) = app_with(
        r#"  default_pool: team
  owners:
    - { id: anna, name: Anna, email: anna@example.com }
  pools:
    - { id: team, members: [anna] }
"#,
    )
    .await;
    let store = app.store();
    let now = Utc::now();
    let mut leads = Vec::new();
    for i in 0..20 {
        leads.push(
            mql(
                &app,
                &format!("parked{i}@example.com"),
                &[],
                Grade::B,
                Temperature::Warm,
            )
            .await,
        );
    }
    let wait = |lead_id| RoutingWait {
        lead_id,
        reason: WaitReason::NoRoutingConfig,
        since: now,
        until: now,
        tries: 1,
    };
    let (old, parked) = leads.split_last().expect("leads");
    for lead in parked {
        store.park(&wait(*lead)).await.unwrap();
    }
    // One wait as the release before sharding parked it.
    app.dynamo
        .put_item()
        .table_name(app.table())
        .item("pk", S(format!("LEAD#{old}")))
        .item("sk", S("ROUTEWAIT".into()))
        .item("entity", S("routing_wait".into()))
        .item("gsi2pk", S("ROUTEWAIT".into()))
        .item(
            "gsi2sk",
            S(format!("{}#{old}", leadflow_aws::dynamo::sortable(now))),
        )
        .item("wait", S(serde_json::to_string(&wait(*old)).unwrap()))
        .send()
        .await
        .expect("an unsharded routing wait");
    let items = app.items("routing_wait").await;
    assert_eq!(items.len(), leads.len());
    let mut shards = std::collections::BTreeSet::new();
    for item in &items {
        let pk = crate::support::s(item, "pk");
        let lead: LeadId = pk.trim_start_matches("LEAD#").parse().unwrap();
        let gsi2pk = crate::support::s(item, "gsi2pk");
        if lead != *old {
            assert_eq!(gsi2pk, format!("ROUTEWAIT#{:02}", sla_shard(lead)));
        }
        shards.insert(gsi2pk.to_owned());
    }
    // 19 random lead ids all in one of 16 shards: a chance of about 1e-22.
    assert!(shards.len() > 2, "spread over shards: {shards:?}");

    let tick = SlaTick::new(
        app.store(),
        EventBridgePublisher::new(app.events.clone(), app.resource("LeadBus")),
        ActiveConfig::new(app.store(), std::time::Duration::ZERO),
        // Pages smaller than the shards: the cursor carries every shard's place.
        TickSettings {
            page: 3,
            ..TickSettings::DEFAULT
        },
    );
    let report = tick
        .run_at(now + Duration::minutes(1))
        .await
        .expect("the tick runs");
    assert_eq!(
        (report.routed, report.still_waiting, report.failed),
        (leads.len(), 0, 0),
        "{report:?}"
    );
    for lead in &leads {
        let lead = store.get(*lead).await.unwrap().unwrap();
        assert_eq!(owner_of(&lead), "anna");
        assert!(store.routing_wait(lead.id).await.unwrap().is_none());
    }
    assert!(app.items("routing_wait").await.is_empty());
}
