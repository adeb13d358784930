//! docs/openapi.yaml and the routes the stack serves (from template.yaml) agree.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::TestApp;

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

fn spec() -> Value {
    let path = leadflow_local::workspace_root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
    serde_norway::from_str(&text).expect("openapi.yaml is YAML")
}

#[tokio::test(flavor = "multi_thread")]
async fn served_routes_and_the_spec_agree() {
    let app = TestApp::spawn().await;
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, _) in item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(m, _)| METHODS.contains(&m.as_str()))
        {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = app
        .stack
        .manifest
        .routes()
        .into_iter()
        .map(|(r, _)| (r.method.to_uppercase(), r.path))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.yaml and template.yaml routes differ"
    );

    // Every served operation answers, with a status the spec documents for it.
    for (method, path) in &served {
        let op = &spec["paths"][path][method.to_lowercase()];
        let documented: BTreeSet<String> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let request = app
            .http
            .request(method.parse().unwrap(), format!("{}{}", app.base_url, path))
            .header("origin", "http://localhost:8080")
            .header("access-control-request-method", "POST");
        for (content_type, body) in [
            ("application/json", "{}"),
            ("application/json", r#"{"email":"spec@example.com"}"#),
            ("text/plain", "x"),
        ] {
            let response = request
                .try_clone()
                .unwrap()
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16().to_string();
            assert!(
                documented.contains(&status),
                "{method} {path} answered {status}, which the spec does not document"
            );
            if response.status().is_client_error() {
                let body: Value = response.json().await.expect("4xx bodies are JSON");
                assert!(
                    body["error"].is_string(),
                    "{method} {path} {status}: {body}"
                );
            }
        }
    }
}

/// API Gateway answers some requests itself, before a function runs: 429 from its throttle on
/// every route, 403 from the IAM authorizer on signed routes. The spec documents both where
/// they happen, so clients handle them.
#[test]
fn the_gateways_own_answers_are_documented() {
    let spec = spec();
    let template: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(leadflow_local::workspace_root().join("template.yaml"))
            .expect("template.yaml"),
    )
    .expect("template.yaml is YAML");
    let mut checked = 0;
    for (_, resource) in template["Resources"].as_mapping().expect("Resources") {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values().filter(|e| e["Type"] == "HttpApi") {
            let p = &event["Properties"];
            let (method, path) = (
                p["Method"].as_str().unwrap().to_lowercase(),
                p["Path"].as_str().unwrap(),
            );
            let responses = &spec["paths"][path][&method]["responses"];
            assert_eq!(
                responses["429"]["$ref"], "#/components/responses/Throttled",
                "{method} {path}: API Gateway's throttle answers 429"
            );
            if p["Auth"]["Authorizer"] == "AWS_IAM" {
                assert_eq!(
                    responses["403"]["$ref"], "#/components/responses/IamForbidden",
                    "{method} {path}: the IAM authorizer answers 403"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "found only {checked} routes in template.yaml"
    );
    for name in ["Throttled", "IamForbidden"] {
        assert!(
            spec["components"]["responses"][name]["description"].is_string(),
            "{name}"
        );
    }
}
