//! The configuration a local stack runs with: `config/leadflow.yaml`, pushed as the first
//! version when the stack has none, so scoring works from the first event.

use leadflow_aws::dynamo::DynamoStore;
use leadflow_domain::config::LeadflowConfig;
use leadflow_domain::ports::ConfigStore;

use crate::{workspace_root, LocalStack};

/// The example configuration shipped with the repository.
pub fn example_path() -> std::path::PathBuf {
    workspace_root().join("config/leadflow.yaml")
}

/// Pushes `config/leadflow.yaml` unless a version is active; says which version is in force.
pub async fn ensure_active(stack: &LocalStack) -> Result<String, String> {
    let store = DynamoStore::new(
        leadflow_aws::aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack
            .manifest
            .resource("LeadsTable")
            .ok_or("the stack has no LeadsTable")?,
    );
    if let Some(active) = store.active().await.map_err(|e| e.to_string())? {
        return Ok(format!("version {} (already active)", active.version));
    }
    let path = example_path();
    let yaml = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    LeadflowConfig::parse(&yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    let stored = store
        .push(
            &yaml,
            Some("pushed by cargo dev from config/leadflow.yaml"),
            chrono::Utc::now(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "version {} from config/leadflow.yaml (change it with `cargo leadflow config push`)",
        stored.version
    ))
}
