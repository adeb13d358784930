//! Round-robin turns and daily caps: atomic counters in the table (docs/data-model.md).

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::NaiveDate;
use leadflow_domain::ports::{RoutingState, StoreError};

use crate::dynamo::DynamoStore;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl RoutingState for DynamoStore {
    async fn next_turn(&self, pool: &str) -> Result<u64, StoreError> {
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(format!("ROUTING#pool#{pool}")))
            .key("sk", s("TURN"))
            .update_expression("ADD turns :one SET entity = :entity")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":entity", s("routing_turn"))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.attributes()
            .and_then(|a| a.get("turns"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("turn counter without turns".into()))
    }

    async fn take_daily_slot(
        &self,
        owner: &str,
        day: NaiveDate,
        cap: u32,
    ) -> Result<bool, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(format!("ROUTING#owner#{owner}")))
            .key("sk", s(format!("DAY#{day}")))
            .update_expression("ADD assigned :one SET entity = :entity, expires_at = :expires")
            .condition_expression("attribute_not_exists(assigned) OR assigned < :cap")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(cap))
            .expression_attribute_values(":entity", s("routing_daily"))
            .expression_attribute_values(
                ":expires",
                n((day + chrono::Days::new(8))
                    .and_hms_opt(0, 0, 0)
                    .map_or(0, |t| t.and_utc().timestamp())),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn release_daily_slot(&self, owner: &str, day: NaiveDate) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(format!("ROUTING#owner#{owner}")))
            .key("sk", s(format!("DAY#{day}")))
            .update_expression("ADD assigned :minus_one")
            .condition_expression("assigned > :zero")
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Ok(())
                } else {
                    Err(StoreError::unavailable(e))
                }
            })
    }
}
