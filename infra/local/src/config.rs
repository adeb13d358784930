//! The configuration a local stack runs with: `config/leadflow.yaml`, pushed as the first
//! version when the stack has none, so scoring works from the first event.

use leadflow_aws::dynamo::DynamoStore;
use leadflow_domain::config::{LeadflowConfig, StoredConfig};
use leadflow_domain::ports::ConfigStore;

use crate::{workspace_root, LocalStack};

/// The example configuration shipped with the repository.
pub fn example_path() -> std::path::PathBuf {
    workspace_root().join("config/leadflow.yaml")
}

/// Checks a configuration as `leadflow config push` does for this stack's mode (CRM endpoints:
/// anything in local mode, public https when the stack runs as deployed), then stores it as
/// the active version.
pub async fn push(
    stack: &LocalStack,
    yaml: &str,
    note: Option<&str>,
) -> Result<StoredConfig, String> {
    let config = LeadflowConfig::parse(yaml).map_err(|e| e.to_string())?;
    let refused = config.refused_endpoints(stack.endpoint_mode());
    if !refused.is_empty() {
        let lines: Vec<String> = refused.iter().map(|(at, e)| format!("{at}: {e}")).collect();
        return Err(lines.join("; "));
    }
    store(stack)?
        .push(yaml, note, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())
}

fn store(stack: &LocalStack) -> Result<DynamoStore, String> {
    Ok(DynamoStore::new(
        leadflow_aws::aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack
            .manifest
            .resource("LeadsTable")
            .ok_or("the stack has no LeadsTable")?,
    ))
}

/// Pushes `config/leadflow.yaml` unless a version is active; says which version is in force.
pub async fn ensure_active(stack: &LocalStack) -> Result<String, String> {
    let store = store(stack)?;
    if let Some(active) = store.active().await.map_err(|e| e.to_string())? {
        return Ok(format!("version {} (already active)", active.version));
    }
    let path = example_path();
    let yaml = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let stored = push(
        stack,
        &yaml,
        Some("pushed by cargo dev from config/leadflow.yaml"),
    )
    .await
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "version {} from config/leadflow.yaml (change it with `cargo leadflow config push`)",
        stored.version
    ))
}
