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
