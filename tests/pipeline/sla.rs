//! The SLA ladders on the emulator, driven by ticks at chosen times (the sla-tick function as
//! the local stack runs it, with the event's `time`), delivering to real HTTP receivers that
//! check every signature independently.

use chrono::{DateTime, Utc};
use leadflow_domain::assignment::{AssignedTo, AssignmentEnd};
use leadflow_domain::ports::LeadStore;
use leadflow_domain::scoring::{Grade, Temperature};
use leadflow_domain::{Lead, LeadId};
use leadflow_lambda::active_config::ActiveConfig;
use route::Route;
use serde_json::{json, Value};

use crate::crm_receiver::{verified_independently, CrmReceiver, Received};
use crate::support::{crm_callback, TestApp};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn config(owners: &str, p1: &str, p2: &str) -> String {
    let scoring = crate::support::example_scoring();
    format!(
        r#"{scoring}
routing:
  default_pool: sales
  crm: {{ endpoint: "{owners}", secret: "env:CRM_WEBHOOK_SECRET" }}
  owners:
    - {{ id: anna, name: Anna Berg, email: anna@example.com, manager: maria }}
    - {{ id: ben, name: Ben Kaya, email: ben@example.com, manager: maria }}
    - {{ id: maria, name: Maria Vogt, email: maria@example.com }}
  partners:
    - {{ id: p1, name: Alpen IT, crm: {{ endpoint: "{p1}", secret: "env:CRM_WEBHOOK_SECRET" }} }}
    - {{ id: p2, name: Donau Soft, crm: {{ endpoint: "{p2}", secret: "env:CRM_WEBHOOK_SECRET" }} }}
  pools:
    - {{ id: sales, members: [anna, ben] }}
    - {{ id: resellers, partners: [p1, p2], staging_manager: maria }}
  rules:
    - {{ id: austria, countries: [AT], pool: resellers }}
sla:
  calendars:
    - {{ id: berlin, time_zone: Europe/Berlin, working_days: [mon, tue, wed, thu, fri],
        working_hours: "08:00-18:00", holidays: [2026-12-24, 2026-12-25] }}
  teams:
    - id: sales
      calendar: berlin
      pools: [sales]
      ladder:
        - {{ after: 2d, action: remind_owner }}
        - {{ after: 1d, action: remind_with_manager }}
        - {{ after: 1d, action: reassign }}
      hot_ladder:
        - {{ after: 15m, action: remind_owner }}
        - {{ after: 45m, action: escalate_to_manager }}
        - {{ after: 1h, action: return_to_queue }}
      when_owner_away: reassign
    - {{ id: partners, calendar: berlin, pools: [resellers], offer_expires_after: 4h }}
"#
    )
}

struct Sla {
    app: TestApp,
    owners: CrmReceiver,
    p1: CrmReceiver,
    p2: CrmReceiver,
}

/// A stack whose crm-webhook runs, receivers for the owners' CRM and two partners, and the
/// configuration naming them.
async fn sla_stack() -> Sla {
    let secret = format!("CrmWebhookSecret={SECRET}");
    let mut app = TestApp::spawn_with(&["ConfigCacheSeconds=0", &secret]).await;
    let api = app.base_url.clone();
    app.stack
        .override_env("PUBLIC_API_URL", &api)
        .expect("functions rebuilt");
    let app = app.run(&["crm-webhook"]);
    let (owners, p1, p2) = (
        CrmReceiver::start(&[]).await,
        CrmReceiver::start(&[]).await,
        CrmReceiver::start(&[]).await,
    );
    app.push_config(&config(&owners.url, &p1.url, &p2.url))
        .await;
    Sla {
        app,
        owners,
        p1,
        p2,
    }
}

async fn mql(app: &TestApp, email: &str, country: &str) -> LeadId {
    mql_at(app, email, country, Temperature::Warm).await
}

async fn mql_at(app: &TestApp, email: &str, country: &str, temperature: Temperature) -> LeadId {
    crate::support::mql(
        app,
        email,
        &[("company", "Beispiel GmbH"), ("country", country)],
        Grade::B,
        temperature,
    )
    .await
}

/// Routes the lead as the route function does on `LeadQualified`, at `now`.
async fn route(app: &TestApp, lead: LeadId, now: DateTime<Utc>) {
    Route::new(
        app.store(),
        leadflow_aws::eventbridge::EventBridgePublisher::new(
            app.events.clone(),
            app.resource("LeadBus"),
        ),
        ActiveConfig::new(app.store(), std::time::Duration::ZERO),
    )
    .route(lead, now)
    .await
    .expect("routed");
}

/// One tick of the sla-tick function as the schedule would fire it at `now`.
async fn tick(app: &TestApp, now: DateTime<Utc>) -> String {
    let f = app.stack.function("sla-tick").expect("sla-tick");
    let event: aws_lambda_events::event::eventbridge::EventBridgeEvent<Value> =
        serde_json::from_value(json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": now, "region": "us-east-1",
            "resources": [], "detail": {}
        }))
        .unwrap();
    (f.schedule.as_ref().unwrap())(event)
        .await
        .expect("the tick runs")
}

async fn lead_of(app: &TestApp, id: LeadId) -> Lead {
    app.store().get(id).await.unwrap().expect("the lead")
}

/// The deliveries of a type, each checked: signed (independently verified) and for `lead`.
fn of_type<'a>(received: &'a [Received], kind: &str, lead: LeadId) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| r.json()["type"] == kind && r.json()["data"]["lead_id"] == lead.to_string())
        .inspect(|r| assert!(verified_independently(SECRET, r), "{kind} is signed"))
        .collect()
}

async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
}

async fn timeline_actions(app: &TestApp, lead: LeadId) -> Vec<String> {
    app.store()
        .timeline(lead)
        .await
        .unwrap()
        .iter()
        .map(|e| e.action.to_string())
        .collect()
}

/// The issue's "done when": nobody accepts a lead routed on Friday 17:55 (Berlin); it is
/// reminded after two working days, reminded with the manager in copy a working day later,
/// and reassigned a working day after that, each notice delivered once and signed, and the
/// timeline and the SLA facts show every step with hand-computed waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_lead_nobody_accepts_is_reminded_escalated_and_reassigned_on_working_time() {
    let s = sla_stack().await;
    let app = &s.app;
    let lead = mql(app, "waiting@example.de", "DE").await;
    let routed = at("2026-11-20T16:55:00Z");
    route(app, lead, routed).await;
    let assigned = lead_of(app, lead).await.assignment.unwrap();
    assert_eq!(assigned.assignee_id(), "anna");
    assert_eq!(assigned.sla_deadline, at("2026-11-24T16:55:00Z"));

    // Saturday, Monday, one minute early: nothing is due.
    for t in [
        "2026-11-21T12:00:00Z",
        "2026-11-23T16:55:00Z",
        "2026-11-24T16:54:00Z",
    ] {
        assert!(tick(app, at(t)).await.contains("0 steps taken"), "{t}");
    }
    let first = tick(app, at("2026-11-24T16:55:00Z")).await;
    assert!(first.contains("1 steps taken"), "{first}");
    // The same minute again, twice at once, and late: each step once.
    let (a, b) = tokio::join!(
        tick(app, at("2026-11-24T16:55:00Z")),
        tick(app, at("2026-11-24T17:30:00Z"))
    );
    assert!(
        a.contains("0 steps taken") && b.contains("0 steps taken"),
        "{a} / {b}"
    );
    let second = tick(app, at("2026-11-25T16:55:00Z")).await;
    assert!(second.contains("1 steps taken"), "{second}");
    let third = tick(app, at("2026-11-26T16:56:00Z")).await;
    assert!(third.contains("1 steps taken"), "{third}");

    s.owners.wait_for(6, 20).await;
    settle().await;
    let received = s.owners.received();
    let reminders = of_type(&received, "lead.sla.reminder", lead);
    assert_eq!(reminders.len(), 2, "two reminders, each once");
    assert!(reminders[0].json()["data"]["manager"].is_null());
    assert_eq!(
        reminders[1].json()["data"]["manager"]["id"],
        "maria",
        "in copy"
    );
    assert_eq!(reminders[0].json()["data"]["due"], "2026-11-24T16:55:00Z");
    assert!(reminders[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("Anna Berg"));
    let reassigned = of_type(&received, "lead.reassigned", lead);
    assert_eq!(reassigned.len(), 1);
    assert_eq!(
        reassigned[0].json()["data"]["assignment"]["assigned_to"]["id"],
        "anna"
    );
    assert_eq!(reassigned[0].json()["data"]["now_with"]["id"], "ben");
    let routed_to: Vec<Value> = of_type(&received, "lead.routed", lead)
        .iter()
        .map(|r| r.json()["data"]["assignment"]["assigned_to"]["id"].clone())
        .collect();
    assert_eq!(
        routed_to,
        ["anna", "ben"],
        "the new owner's CRM receives the lead"
    );

    let stored = lead_of(app, lead).await;
    let now_with = stored.assignment.as_ref().unwrap();
    assert_eq!(now_with.assignee_id(), "ben");
    assert!(
        now_with.sla.as_ref().unwrap().next_due.is_some(),
        "a new ladder runs"
    );
    let old = &stored.assignment_history[0];
    let outcome = old.outcome.as_ref().unwrap();
    assert_eq!(outcome.end, AssignmentEnd::Reassigned);
    // Raw: Friday 16:55 to Thursday 16:56. Working: 5 min Friday, Monday to Wednesday 10 h
    // each, Thursday 08:00 to 17:56 Berlin.
    assert_eq!(outcome.waited_seconds, (6 * 24 * 60 + 1) * 60);
    assert_eq!(
        outcome.waited_working_seconds,
        (5 + 3 * 600 + 9 * 60 + 56) * 60
    );
    assert!(
        outcome.system_seconds.is_some(),
        "the CRM took the delivery"
    );
    let steps: Vec<_> = old
        .sla
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| (s.step, s.due, s.at))
        .collect();
    assert_eq!(
        steps,
        [
            (0, at("2026-11-24T16:55:00Z"), at("2026-11-24T16:55:00Z")),
            (1, at("2026-11-25T16:55:00Z"), at("2026-11-25T16:55:00Z")),
            (2, at("2026-11-26T16:55:00Z"), at("2026-11-26T16:56:00Z")),
        ]
    );
    let actions = timeline_actions(app, lead).await;
    for a in ["sla_reminder", "reassigned", "routed", "crm_delivered"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| *a == "sla_reminder").count(), 2);

    // Ben lets it expire too: it never goes back to Anna; with nobody left in the pool, the
    // manager's queue takes it.
    for t in [
        "2026-11-30T16:56:00Z",
        "2026-12-01T16:56:00Z",
        "2026-12-02T16:56:00Z",
    ] {
        tick(app, at(t)).await;
    }
    let stored = lead_of(app, lead).await;
    let queued = stored.assignment.as_ref().unwrap();
    assert!(
        matches!(&queued.assigned_to, AssignedTo::ManagerQueue { id, .. } if id == "maria"),
        "{queued:?}"
    );
    let owners: Vec<_> = stored
        .assignment_history
        .iter()
        .map(|a| a.assignee_id())
        .collect();
    assert_eq!(owners, ["anna", "ben"], "never back to anna");
}

/// Accepted in between: the clock stops, no reminder is ever sent, and the wait is measured.
#[tokio::test(flavor = "multi_thread")]
async fn acceptance_stops_the_ladder() {
    let s = sla_stack().await;
    let app = &s.app;
    let lead = mql(app, "quick@example.de", "DE").await;
    route(app, lead, at("2026-11-23T08:00:00Z")).await;
    // The CRM took the delivery (the system's part of the wait ends there).
    assert!(
        crate::support::eventually(20, || async {
            lead_of(app, lead)
                .await
                .assignment
                .is_some_and(|a| a.delivered_at.is_some())
        })
        .await
    );
    let body = json!({"status": "accepted", "lead_id": lead.to_string()});
    let (status, _, _) = crm_callback(
        app,
        SECRET,
        "msg_accept_quick",
        Utc::now().timestamp(),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    assert!(tick(app, at("2026-11-30T12:00:00Z"))
        .await
        .contains("0 steps taken"));
    s.owners.wait_for(1, 10).await;
    settle().await;
    assert!(of_type(&s.owners.received(), "lead.sla.reminder", lead).is_empty());
    let a = lead_of(app, lead).await.assignment.unwrap();
    assert_eq!(a.sla.as_ref().unwrap().next_due, None);
    let outcome = a.outcome.unwrap();
    assert_eq!(outcome.end, AssignmentEnd::Accepted);
    assert!(outcome.waited_seconds > 0 && outcome.person_seconds.is_some());
}

/// Weekends and holidays are days off: a lead routed on 23 December at 17:00 Berlin with two
/// working days to go is due on 29 December at 17:00.
#[tokio::test(flavor = "multi_thread")]
async fn weekends_and_holidays_do_not_count() {
    let s = sla_stack().await;
    let app = &s.app;
    let lead = mql(app, "xmas@example.de", "DE").await;
    route(app, lead, at("2026-12-23T16:00:00Z")).await;
    let a = lead_of(app, lead).await.assignment.unwrap();
    assert_eq!(a.sla_deadline, at("2026-12-29T16:00:00Z"));
    for t in [
        "2026-12-24T16:00:00Z",
        "2026-12-28T16:00:00Z",
        "2026-12-29T15:59:00Z",
    ] {
        assert!(tick(app, at(t)).await.contains("0 steps taken"), "{t}");
    }
    assert!(tick(app, at("2026-12-29T16:00:00Z"))
        .await
        .contains("1 steps taken"));
}

/// An owner marked away through the API gets no new leads, and their due lead is reassigned
/// at once (the team's `when_owner_away: reassign`) instead of reminding someone who is away.
#[tokio::test(flavor = "multi_thread")]
async fn an_away_owner_gets_no_leads_and_their_due_leads_move_on() {
    let s = sla_stack().await;
    let app = &s.app;
    let first = mql(app, "before@example.de", "DE").await;
    route(app, first, at("2026-11-23T08:00:00Z")).await;
    assert_eq!(
        lead_of(app, first).await.assignment.unwrap().assignee_id(),
        "anna"
    );
    let away = app
        .http
        .put(format!("{}/owners/anna/away", app.base_url))
        .json(&json!({"from": "2026-11-24", "to": "2026-12-04", "by": "maria"}))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), 200);
    let unknown = app
        .http
        .put(format!("{}/owners/zoe/away", app.base_url))
        .json(&json!({"from": "2026-11-24", "to": "2026-12-04", "by": "maria"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad = app
        .http
        .put(format!("{}/owners/anna/away", app.base_url))
        .json(&json!({"from": "2026-12-04", "to": "2026-11-24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let errors: Value = bad.json().await.unwrap();
    assert!(errors["fields"]["to"].is_string() && errors["fields"]["by"].is_string());

    // While Anna is away (the round-robin's next turn would be hers): Ben.
    for email in ["one@example.de", "two@example.de"] {
        let lead = mql(app, email, "DE").await;
        route(app, lead, at("2026-11-25T08:00:00Z")).await;
        assert_eq!(
            lead_of(app, lead).await.assignment.unwrap().assignee_id(),
            "ben"
        );
    }
    // Anna's lead from before is due on Wednesday 08:00: reassigned, not reminded.
    tick(app, at("2026-11-25T08:00:00Z")).await;
    let moved = lead_of(app, first).await;
    assert_eq!(moved.assignment.as_ref().unwrap().assignee_id(), "ben");
    let step = &moved.assignment_history[0].sla.as_ref().unwrap().steps[0];
    assert_eq!(
        serde_json::to_value(step.action).unwrap(),
        "reassign",
        "no reminder to someone away"
    );
    let back = app
        .http
        .delete(format!("{}/owners/anna/away", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 204);
}

/// A partner pool offers the lead without its contact data; an offer not accepted in time goes
/// to the next partner, a declined one too, and with no partner left the lead goes to the
/// manager's queue. Neither partner is offered it again.
#[tokio::test(flavor = "multi_thread")]
async fn partner_offers_expire_and_cascade_to_the_managers_queue() {
    let s = sla_stack().await;
    let app = &s.app;
    let lead = mql(app, "wien@example.at", "AT").await;
    route(app, lead, at("2026-11-23T08:00:00Z")).await;
    let offer = lead_of(app, lead).await.assignment.unwrap();
    assert_eq!(offer.assignee_id(), "p1");
    // 09:00 in Berlin plus 4 working hours.
    assert_eq!(
        offer.sla_deadline,
        at("2026-11-23T12:00:00Z"),
        "4 working hours"
    );
    let offered = s.p1.wait_for(1, 20).await;
    let offered = of_type(&offered, "lead.offered", lead);
    assert_eq!(offered.len(), 1);
    let data = &offered[0].json()["data"];
    assert!(
        data["contact"].is_null(),
        "no contact data before acceptance: {data}"
    );
    assert!(data["company"]["name"].is_null());
    // What a partner may see stays: the score (none here), interests, the assignment.
    assert!(data.get("score").is_some() && data["interests"].is_array());
    assert_eq!(data["assignment"]["assigned_to"]["id"], "p1");

    assert!(tick(app, at("2026-11-23T11:59:00Z"))
        .await
        .contains("0 steps taken"));
    tick(app, at("2026-11-23T12:00:00Z")).await;
    assert_eq!(
        lead_of(app, lead).await.assignment.unwrap().assignee_id(),
        "p2"
    );
    let p1 = s.p1.wait_for(2, 20).await;
    assert_eq!(of_type(&p1, "lead.offer.expired", lead).len(), 1);
    assert_eq!(
        of_type(&s.p2.wait_for(1, 20).await, "lead.offered", lead).len(),
        1
    );

    // p2 declines; the next tick moves on: nobody is left, so Maria's queue takes it.
    let body = json!({"status": "declined", "lead_id": lead.to_string(), "reason": "no capacity"});
    let (status, answer, _) =
        crm_callback(app, SECRET, "msg_decline", Utc::now().timestamp(), &body).await;
    assert_eq!(status, 200, "{answer}");
    // The callback happened now (the wall clock): the next tick after it moves on.
    tick(app, Utc::now() + chrono::Duration::minutes(1)).await;
    let stored = lead_of(app, lead).await;
    let queued = stored.assignment.as_ref().unwrap();
    assert!(
        matches!(&queued.assigned_to, AssignedTo::ManagerQueue { id, .. } if id == "maria"),
        "{queued:?}"
    );
    let ends: Vec<_> = stored
        .assignment_history
        .iter()
        .map(|a| a.outcome.as_ref().unwrap().end)
        .collect();
    assert_eq!(ends, [AssignmentEnd::OfferExpired, AssignmentEnd::Declined]);
    let actions = timeline_actions(app, lead).await;
    for a in ["offer_expired", "offer_declined"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    settle().await;
    assert!(
        of_type(&s.p2.received(), "lead.offer.expired", lead).is_empty(),
        "the partner who declined is not told it expired"
    );
}

/// A partner that accepts its offer receives the lead with its contact data.
#[tokio::test(flavor = "multi_thread")]
async fn a_partner_that_accepts_receives_the_contact_data() {
    let s = sla_stack().await;
    let app = &s.app;
    let lead = mql(app, "linz@example.at", "AT").await;
    route(app, lead, at("2026-11-23T08:00:00Z")).await;
    s.p1.wait_for(1, 20).await;
    let body = json!({"status": "accepted", "lead_id": lead.to_string()});
    let (status, _, _) =
        crm_callback(app, SECRET, "msg_p1_accepts", Utc::now().timestamp(), &body).await;
    assert_eq!(status, 200);
    let received = s.p1.wait_for(2, 20).await;
    let full = of_type(&received, "lead.routed", lead);
    assert_eq!(
        full.len(),
        1,
        "{:?}",
        received
            .iter()
            .map(|r| r.json()["type"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        full[0].json()["data"]["contact"]["email"],
        "linz@example.at"
    );
    assert!(tick(app, at("2026-11-24T08:00:00Z"))
        .await
        .contains("0 steps taken"));
}

/// A hot lead climbs the hot ladder within the hour: a reminder after 15 minutes, the
/// manager told after 45 more (`lead.sla.escalated` to the manager's CRM), and after another
/// hour the lead goes to the manager's queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_hot_lead_is_escalated_to_the_manager_within_the_hour() {
    let s = sla_stack().await;
    let app = &s.app;
    let lead = mql_at(app, "hot@example.de", "DE", Temperature::Hot).await;
    route(app, lead, at("2026-11-23T08:00:00Z")).await;
    let a = lead_of(app, lead).await.assignment.unwrap();
    assert_eq!(a.sla_deadline, at("2026-11-23T08:15:00Z"));
    for (t, steps) in [
        ("2026-11-23T08:14:00Z", "0 steps"),
        ("2026-11-23T08:15:00Z", "1 steps"),
        ("2026-11-23T08:59:00Z", "0 steps"),
        ("2026-11-23T09:00:00Z", "1 steps"),
        ("2026-11-23T10:00:00Z", "1 steps"),
    ] {
        let report = tick(app, at(t)).await;
        assert!(report.contains(steps), "{t}: {report}");
    }
    s.owners.wait_for(5, 20).await;
    settle().await;
    let received = s.owners.received();
    let escalated = of_type(&received, "lead.sla.escalated", lead);
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].json()["data"]["manager"]["id"], "maria");
    assert_eq!(escalated[0].json()["data"]["due"], "2026-11-23T09:00:00Z");
    assert_eq!(of_type(&received, "lead.sla.reminder", lead).len(), 1);
    let stored = lead_of(app, lead).await;
    assert!(matches!(
        &stored.assignment.as_ref().unwrap().assigned_to,
        AssignedTo::ManagerQueue { id, .. } if id == "maria"
    ));
    let end = stored.assignment_history[0].outcome.as_ref().unwrap();
    assert_eq!(end.end, AssignmentEnd::ReturnedToQueue);
    assert_eq!(
        (end.waited_seconds, end.waited_working_seconds),
        (7200, 7200)
    );
}

/// A tick that runs out of time leaves what it did not reach due for the next tick: nothing
/// is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_tick_out_of_time_leaves_the_rest_for_the_next() {
    use sla_tick::{SlaTick, TickSettings};
    let s = sla_stack().await;
    let app = &s.app;
    let mut leads = Vec::new();
    for n in 0..3 {
        let lead = mql(app, &format!("late{n}@example.de"), "DE").await;
        route(app, lead, at("2026-11-23T08:00:00Z")).await;
        leads.push(lead);
    }
    let tick = |budget| {
        SlaTick::new(
            app.store(),
            leadflow_aws::eventbridge::EventBridgePublisher::new(
                app.events.clone(),
                app.resource("LeadBus"),
            ),
            ActiveConfig::new(app.store(), std::time::Duration::ZERO),
            TickSettings {
                budget,
                ..TickSettings::DEFAULT
            },
        )
    };
    let due = at("2026-11-25T08:00:00Z");
    let out_of_time = tick(std::time::Duration::ZERO).run_at(due).await.unwrap();
    assert!(out_of_time.left_for_next_tick);
    assert_eq!(out_of_time.steps, 0);
    let next = tick(TickSettings::DEFAULT.budget)
        .run_at(due)
        .await
        .unwrap();
    assert_eq!((next.steps, next.left_for_next_tick), (3, false), "{next}");
    for lead in leads {
        let track = lead_of(app, lead).await.assignment.unwrap().sla.unwrap();
        assert_eq!(track.steps_taken, 1);
    }
}
