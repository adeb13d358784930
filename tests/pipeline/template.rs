//! template.yaml stays least-privilege and in step with the workspace.

use serde_norway::Value;

fn template() -> Value {
    let path = leadflow_local::workspace_root().join("template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).expect("template.yaml"))
        .expect("template.yaml is YAML")
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_owned(), r))
        .collect()
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

#[test]
fn policies_name_actions_and_resources_exactly() {
    let t = template();
    for (name, f) in functions(&t) {
        for policy in as_list(&f["Properties"]["Policies"]) {
            assert!(
                policy.is_mapping(),
                "{name}: only inline statements, no managed or template policies: {policy:?}"
            );
            for statement in as_list(&policy["Statement"]) {
                for action in as_list(&statement["Action"]) {
                    let action = action.as_str().unwrap_or_default();
                    assert!(!action.contains('*'), "{name}: wildcard action {action}");
                }
                for resource in as_list(&statement["Resource"]) {
                    assert_ne!(resource.as_str(), Some("*"), "{name}: wildcard resource");
                }
            }
        }
        // SAM attaches AWSLambdaSQSQueueExecutionRole (all queues) to functions with SQS events.
        if let Some(events) = f["Properties"]["Events"].as_mapping() {
            for (event, spec) in events {
                assert_ne!(
                    spec["Type"], "SQS",
                    "{name}.{event:?}: use an explicit EventSourceMapping"
                );
            }
        }
    }
}

#[test]
fn every_function_is_a_workspace_binary() {
    let t = template();
    let root = leadflow_local::workspace_root();
    for (name, f) in functions(&t) {
        let binary = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} names its binary"));
        let main = root.join("functions").join(binary).join("src/main.rs");
        assert!(
            main.exists(),
            "{name}: functions/{binary}/src/main.rs is missing"
        );
    }
}

/// The HTTP API is split by purpose: what landing pages call is public and served by
/// capture-form alone; the sales and read routes are lead-api's and need SigV4 (IAM).
#[test]
fn the_http_api_is_split_by_purpose() {
    let t = template();
    let routes = |function: &str| -> Vec<(String, String, bool)> {
        let f = &t["Resources"][function];
        let mut routes: Vec<_> = f["Properties"]["Events"]
            .as_mapping()
            .expect("events")
            .values()
            .filter(|e| e["Type"] == "HttpApi")
            .map(|e| {
                let p = &e["Properties"];
                (
                    p["Method"].as_str().unwrap_or_default().to_owned(),
                    p["Path"].as_str().unwrap_or_default().to_owned(),
                    p["Auth"]["Authorizer"] == "AWS_IAM",
                )
            })
            .collect();
        routes.sort();
        routes
    };
    let public = |m: &str, p: &str| (m.to_owned(), p.to_owned(), false);
    let signed = |m: &str, p: &str| (m.to_owned(), p.to_owned(), true);
    assert_eq!(
        routes("CaptureFormFunction"),
        [
            public("OPTIONS", "/events"),
            public("OPTIONS", "/leads"),
            public("POST", "/events"),
            public("POST", "/leads"),
        ]
    );
    assert_eq!(
        routes("LeadApiFunction"),
        [
            signed("DELETE", "/owners/{id}/away"),
            signed("GET", "/leads/{id}"),
            signed("GET", "/segments/{tag}/leads"),
            signed("PATCH", "/leads/{id}/qualification"),
            signed("POST", "/leads/{id}/events"),
            signed("PUT", "/owners/{id}/away"),
        ]
    );
    // The public function cannot list what others entered: no Query on the table.
    let actions: Vec<&str> =
        as_list(&t["Resources"]["CaptureFormFunction"]["Properties"]["Policies"])
            .into_iter()
            .flat_map(|p| as_list(&p["Statement"]))
            .flat_map(|s| as_list(&s["Action"]))
            .filter_map(|a| a.as_str())
            .collect();
    assert!(!actions.contains(&"dynamodb:Query"), "{actions:?}");
}

/// The `Default` of the parameter that `value` refers to (`!Ref Name`).
fn parameter_default(t: &Value, value: &Value) -> i64 {
    let Value::Tagged(tagged) = value else {
        panic!("{value:?} should be a !Ref to a parameter");
    };
    assert_eq!(tagged.tag, "Ref", "{value:?}");
    let name = tagged.value.as_str().expect("parameter name");
    t["Parameters"][name]["Default"]
        .as_i64()
        .unwrap_or_else(|| panic!("parameter {name} has a numeric Default"))
}

/// A tracking burst cannot starve captures or callbacks: every queue consumer takes a bounded
/// number of executions (MaximumConcurrency, not reserved concurrency, which would throttle the
/// poller and push messages towards the DLQ), capture-form and crm-callback keep executions of
/// their own, and POST /events cannot hold more of capture-form's than it leaves for POST /leads.
#[test]
fn tracking_bursts_cannot_starve_captures_or_callbacks() {
    let t = template();
    let resources = t["Resources"].as_mapping().expect("Resources");
    let mut consumers = Vec::new();
    for (id, r) in resources {
        if r["Type"] != "AWS::Lambda::EventSourceMapping" {
            continue;
        }
        let max = &r["Properties"]["ScalingConfig"]["MaximumConcurrency"];
        assert!(
            !max.is_null(),
            "{id:?}: no ScalingConfig.MaximumConcurrency"
        );
        let default = parameter_default(&t, max);
        assert!(
            (2..=20).contains(&default),
            "{id:?}: MaximumConcurrency {default}"
        );
        let Value::Tagged(f) = &r["Properties"]["FunctionName"] else {
            panic!("{id:?}: FunctionName is a !Ref");
        };
        consumers.push((f.value.as_str().unwrap_or_default().to_owned(), default));
    }
    consumers.sort();
    assert_eq!(
        consumers
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        [
            "CrmWebhookFunction",
            "QualifyFunction",
            "RouteFunction",
            "ScoreEventFunction"
        ]
    );
    for (f, _) in &consumers {
        assert!(
            t["Resources"][f.as_str()]["Properties"]["ReservedConcurrentExecutions"].is_null(),
            "{f}: a queue consumer is bounded by MaximumConcurrency, not reserved concurrency"
        );
    }

    let reserved = |function: &str| -> i64 {
        let v = &t["Resources"][function]["Properties"]["ReservedConcurrentExecutions"];
        let Value::Tagged(when) = v else {
            panic!("{function}: ReservedConcurrentExecutions is an !If on its parameter: {v:?}");
        };
        assert_eq!(when.tag, "If");
        let branches = when.value.as_sequence().expect("[condition, then, else]");
        let condition = branches[0].as_str().expect("condition");
        assert!(
            !t["Conditions"][condition].is_null(),
            "{function}: condition {condition}"
        );
        parameter_default(&t, &branches[1])
    };
    let capture = reserved("CaptureFormFunction");
    let callback = reserved("CrmCallbackFunction");
    assert!(capture > 0 && callback > 0);
    // AWS keeps at least 100 of an account's executions unreserved (1,000 by default).
    assert!(capture + callback <= 900);

    // POST /events: at most its burst at once plus its rate times a request's time (about
    // 60 ms, 100 ms allowed here) in capture-form; the rest of the reservation is for /leads.
    let api = &t["Resources"]["HttpApi"]["Properties"];
    let events = &api["RouteSettings"]["POST /events"];
    let burst = parameter_default(&t, &events["ThrottlingBurstLimit"]);
    let rate = parameter_default(&t, &events["ThrottlingRateLimit"]);
    assert!(burst < parameter_default(&t, &api["DefaultRouteSettings"]["ThrottlingBurstLimit"]));
    let tracking = burst + rate / 10;
    assert!(
        capture - tracking >= 20,
        "POST /events can hold {tracking} of capture-form's {capture} executions"
    );
    // Everything the queues can take at once stays a small share of the account.
    let queued: i64 = consumers.iter().map(|(_, n)| n).sum();
    assert!(
        queued <= 50,
        "queue consumers take up to {queued} executions"
    );
}
