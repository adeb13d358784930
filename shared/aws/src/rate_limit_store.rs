//! The per-client rate-limit buckets: one item per bucket (`pk` = `RATE#<route>#<hash>`,
//! `sk` = `BUCKET`) holding when the bucket is full again (`tat`, ms), forgotten by TTL once it
//! is (docs/data-model.md).
//!
//! A request costs one conditional UpdateItem when its bucket is full (a first or occasional
//! request) and when it is refused (the failed condition returns the item); a request admitted
//! from a partly spent bucket costs a second one, which adds one interval under a condition
//! (no compare-and-set: concurrent requests of one client do not make each other retry).

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use leadflow_domain::ports::{RateLimitStore, StoreError};
use leadflow_domain::rate_limit::{Bucket, ClientKey, RateLimit, Step, Verdict};

use crate::dynamo::DynamoStore;

const SK: &str = "BUCKET";
/// Steps tried before giving up: a bucket changes kind at most twice within one request.
const ATTEMPTS: usize = 4;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn tat_of(item: &HashMap<String, AttributeValue>) -> Result<Option<Bucket>, StoreError> {
    match item.get("tat") {
        None => Ok(None),
        Some(v) => v
            .as_n()
            .ok()
            .and_then(|t| t.parse().ok())
            .map(|tat_ms| Some(Bucket { tat_ms }))
            .ok_or_else(|| StoreError::Corrupt("rate-limit bucket without a number tat".into())),
    }
}

impl DynamoStore {
    /// Applies `step` under its condition. `Ok(None)` when written; `Ok(Some(stored))`, the
    /// bucket as it is, when the condition failed.
    async fn apply_step(
        &self,
        key: &ClientKey,
        step: Step,
    ) -> Result<Option<Option<Bucket>>, StoreError> {
        let update = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(key.as_str()))
            .key("sk", s(SK))
            .expression_attribute_values(":entity", s("rate_limit"))
            .expression_attribute_values(":expires", n(step.expires_at().unwrap_or_default()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let update = match step {
            Step::Refill { now_ms, next } => update
                .update_expression("SET tat = :next, expires_at = :expires, entity = :entity")
                .condition_expression("attribute_not_exists(tat) OR tat <= :now")
                .expression_attribute_values(":next", n(next.tat_ms))
                .expression_attribute_values(":now", n(now_ms)),
            Step::Spend {
                now_ms,
                latest_ms,
                interval_ms,
            } => update
                .update_expression(
                    "SET tat = tat + :interval, expires_at = :expires, entity = :entity",
                )
                .condition_expression("tat > :now AND tat <= :latest")
                .expression_attribute_values(":interval", n(interval_ms))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":latest", n(latest_ms)),
            Step::Refuse { .. } => return Ok(None),
        };
        match update.send().await {
            Ok(_) => Ok(None),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(failed) => match failed.item() {
                    Some(item) => tat_of(item).map(Some),
                    // An emulator that does not return the item: read it.
                    None => self.read_bucket(key).await.map(Some),
                },
                other => Err(StoreError::unavailable(other)),
            },
        }
    }

    async fn read_bucket(&self, key: &ClientKey) -> Result<Option<Bucket>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(key.as_str()))
            .key("sk", s(SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.item().map(tat_of).transpose().map(Option::flatten)
    }
}

impl RateLimitStore for DynamoStore {
    async fn take_token(
        &self,
        key: &ClientKey,
        limit: &RateLimit,
        now: DateTime<Utc>,
    ) -> Result<Verdict, StoreError> {
        // First assume a full bucket, the common case of a well-behaved client. A failed
        // condition returns the bucket as it is, which decides the next step; each step's
        // condition holds for every concurrent request of its kind, so a retry is needed only
        // when the bucket changed kind (full to partly spent to spent) in between.
        let mut stored = None;
        for _ in 0..ATTEMPTS {
            let step = limit.plan(stored, now);
            if let Step::Refuse { retry_after } = step {
                return Ok(Verdict::Refuse { retry_after });
            }
            match self.apply_step(key, step).await? {
                None => return Ok(limit.decide(stored, now)),
                Some(found) => stored = found,
            }
        }
        Err(StoreError::Busy)
    }
}
