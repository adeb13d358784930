//! Configuration versions in the table: `CONFIG` / `V#0000000001` ... immutable versions, and
//! `CONFIG` / `ACTIVE` pointing at the one in force.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use leadflow_domain::config::StoredConfig;
use leadflow_domain::ports::{ConfigStore, StoreError};
use sha2::{Digest, Sha256};

use crate::dynamo::DynamoStore;

const PK: &str = "CONFIG";
const ACTIVE_SK: &str = "ACTIVE";

fn version_sk(version: u64) -> String {
    format!("V#{version:010}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

impl ConfigStore for DynamoStore {
    async fn active(&self) -> Result<Option<StoredConfig>, StoreError> {
        let Some(pointer) = self.get_item(PK.to_owned(), ACTIVE_SK).await? else {
            return Ok(None);
        };
        let version = pointer
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("ACTIVE config pointer without version".into()))?;
        self.version(version).await
    }

    async fn version(&self, version: u64) -> Result<Option<StoredConfig>, StoreError> {
        match self.get_item(PK.to_owned(), &version_sk(version)).await? {
            Some(item) => serde_dynamo::from_item(item)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }

    async fn push(
        &self,
        yaml: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<StoredConfig, StoreError> {
        let sha256 = hex::encode(Sha256::digest(yaml.as_bytes()));
        let current = self.active().await?;
        if let Some(current) = current.as_ref().filter(|c| c.sha256 == sha256) {
            // The same text is in force: a second push changes nothing.
            return Ok(current.clone());
        }
        let previous = current.as_ref().map(|c| c.version);
        let stored = StoredConfig {
            version: previous.unwrap_or(0) + 1,
            yaml: yaml.to_owned(),
            sha256,
            created_at: now,
            note: note.map(str::to_owned),
        };
        let mut item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("pk".into(), s(PK));
        item.insert("sk".into(), s(version_sk(stored.version)));
        item.insert("entity".into(), s("config_version"));
        let put_version = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let pointer = Put::builder()
            .table_name(self.table())
            .item("pk", s(PK))
            .item("sk", s(ACTIVE_SK))
            .item("entity", s("config_pointer"))
            .item("version", AttributeValue::N(stored.version.to_string()))
            .item("activated_at", s(now.to_rfc3339()));
        let pointer = match previous {
            None => pointer.condition_expression("attribute_not_exists(pk)"),
            Some(v) => pointer
                .condition_expression("version = :previous")
                .expression_attribute_values(":previous", AttributeValue::N(v.to_string())),
        }
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_version).build())
            .transact_items(TransactWriteItem::builder().put(pointer).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Err(StoreError::VersionConflict {
                    expected: previous.unwrap_or(0),
                })
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}
