//! Scores, event markers, activities, anonymous histories and segments in the single table
//! (docs/data-model.md).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};
use leadflow_domain::crm::Activity;
use leadflow_domain::lead_score::{LeadScore, SegmentMember};
use leadflow_domain::ports::{ScoreStore, ScoreWrite, StoreError};
use leadflow_domain::{LeadId, TrackedEvent};

use crate::dynamo::{keys, sortable, DynamoStore, Item};

/// Markers outlive the oldest event POST /events accepts (90 days), so a late redelivery is
/// still recognised.
const MARKER_RETENTION: Duration = Duration::days(100);
/// A segment membership nobody refreshed for a year has decayed to nothing.
const SEGMENT_RETENTION: Duration = Duration::days(365);

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("item without {name}")))
}

fn event_key(e: &TrackedEvent) -> String {
    format!("{}#{}", sortable(e.occurred_at), e.event_id)
}

impl DynamoStore {
    fn put_item(
        &self,
        item: Item,
        condition: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder().table_name(self.table()).set_item(Some(item));
        let put = match condition {
            Some(c) => put.condition_expression(c),
            None => put,
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(corrupt)?)
            .build())
    }
}

impl ScoreStore for DynamoStore {
    async fn score(&self, lead: LeadId) -> Result<Option<LeadScore>, StoreError> {
        let Some(item) = self.get_item(keys::lead_pk(lead), keys::SCORE_SK).await? else {
            return Ok(None);
        };
        serde_json::from_str(get_s(&item, "record")?)
            .map(Some)
            .map_err(corrupt)
    }

    async fn write_score(&self, w: &ScoreWrite) -> Result<(), StoreError> {
        let lead = w.score.lead_id;
        let now = w.score.updated_at;
        let mut items = Vec::with_capacity(3 + w.events.len() + w.interests.len());
        // 0: the marker: a redelivered event fails here and scores nothing.
        let marker = HashMap::from([
            ("pk".to_owned(), s(keys::event_marker_pk(&w.event.event_id))),
            ("sk".to_owned(), s(keys::EVENT_MARKER_SK)),
            ("entity".to_owned(), s("event_marker")),
            ("lead_id".to_owned(), s(lead.to_string())),
            (
                "expires_at".to_owned(),
                n((w.event.occurred_at + MARKER_RETENTION).timestamp()),
            ),
        ]);
        items.push(self.put_item(marker, Some("attribute_not_exists(pk)"))?);
        // 1: the score record, under optimistic concurrency.
        let record = serde_json::to_string(&w.score).map_err(corrupt)?;
        let mut score = HashMap::from([
            ("pk".to_owned(), s(keys::lead_pk(lead))),
            ("sk".to_owned(), s(keys::SCORE_SK)),
            ("entity".to_owned(), s("score")),
            ("version".to_owned(), n(w.score.version)),
            ("config_version".to_owned(), n(w.score.config_version)),
            ("updated_at".to_owned(), s(sortable(now))),
            ("record".to_owned(), s(record)),
        ]);
        if let Some(snap) = &w.score.snapshot {
            score.insert("score".into(), n(snap.score.as_f64()));
            score.insert(
                "explanation".into(),
                s(serde_json::to_string(&snap.contributions).map_err(corrupt)?),
            );
        }
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(score));
        let put = match w.expected_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(v)),
        };
        items.push(
            TransactWriteItem::builder()
                .put(put.build().map_err(corrupt)?)
                .build(),
        );
        // The activity, for the lead's "last activities".
        let activity = HashMap::from([
            ("pk".to_owned(), s(keys::lead_pk(lead))),
            ("sk".to_owned(), s(format!("ACT#{}", event_key(&w.event)))),
            ("entity".to_owned(), s("activity")),
            (
                "event".to_owned(),
                s(serde_json::to_string(&w.event).map_err(corrupt)?),
            ),
            ("applied".to_owned(), s(w.applied.to_string())),
        ]);
        items.push(self.put_item(activity, None)?);
        for (tag, weight) in &w.interests {
            let member = HashMap::from([
                ("pk".to_owned(), s(keys::segment_pk(tag))),
                ("sk".to_owned(), s(keys::lead_pk(lead))),
                ("entity".to_owned(), s("segment_member")),
                ("lead_id".to_owned(), s(lead.to_string())),
                ("weight".to_owned(), n(weight)),
                ("weight_at".to_owned(), s(sortable(now))),
                (
                    "expires_at".to_owned(),
                    n((now + SEGMENT_RETENTION).timestamp()),
                ),
            ]);
            items.push(self.put_item(member, None)?);
        }
        let claimed_until = now + crate::dynamo::OUTBOX_WRITER_CLAIM;
        for event in &w.events {
            items.push(self.put_item(DynamoStore::outbox_item(event, claimed_until)?, None)?);
        }

        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else { return Ok(()) };
        let reasons: Vec<String> = match err.as_service_error() {
            Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                c.cancellation_reasons().iter().map(|r| r.code().unwrap_or_default().to_owned()).collect()
            }
            _ => return Err(StoreError::unavailable(err)),
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        if failed(0) {
            Err(StoreError::AlreadyProcessed)
        } else if failed(1) {
            Err(StoreError::VersionConflict {
                expected: w.expected_version.unwrap_or(0),
            })
        } else if reasons.iter().any(|c| c == "TransactionConflict") {
            Err(StoreError::Busy)
        } else if reasons.is_empty() {
            // Emulators may cancel without reasons: the marker tells a redelivery apart.
            match self
                .get_item(
                    keys::event_marker_pk(&w.event.event_id),
                    keys::EVENT_MARKER_SK,
                )
                .await?
            {
                Some(_) => Err(StoreError::AlreadyProcessed),
                None => Err(StoreError::VersionConflict {
                    expected: w.expected_version.unwrap_or(0),
                }),
            }
        } else {
            Err(StoreError::unavailable(format!(
                "transaction canceled: {}",
                reasons.join(", ")
            )))
        }
    }

    async fn park_anonymous(&self, key: &str, event: &TrackedEvent) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(keys::anonymous_pk(key)))
            .item("sk", s(format!("EV#{}", event_key(event))))
            .item("entity", s("anonymous_event"))
            .item("event", s(serde_json::to_string(event).map_err(corrupt)?))
            .item(
                "expires_at",
                n((event.occurred_at + MARKER_RETENTION).timestamp()),
            )
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn anonymous_events(&self, key: &str) -> Result<Vec<TrackedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk AND begins_with(sk, :ev)")
                .expression_attribute_values(":pk", s(keys::anonymous_pk(key)))
                .expression_attribute_values(":ev", s("EV#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            for item in out.items() {
                events.push(serde_json::from_str(get_s(item, "event")?).map_err(corrupt)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(events),
            }
        }
    }

    async fn claim_anonymous(&self, key: &str, lead: LeadId) -> Result<LeadId, StoreError> {
        self.claim_owner(
            keys::anonymous_pk(key),
            keys::ANONYMOUS_OWNER_SK,
            "anonymous_owner",
            lead,
        )
        .await
    }

    async fn anonymous_owner(&self, key: &str) -> Result<Option<LeadId>, StoreError> {
        self.owner_at(keys::anonymous_pk(key), keys::ANONYMOUS_OWNER_SK)
            .await
    }

    async fn recent_activities(
        &self,
        lead: LeadId,
        limit: usize,
    ) -> Result<Vec<Activity>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :act)")
            .expression_attribute_values(":pk", s(keys::lead_pk(lead)))
            .expression_attribute_values(":act", s("ACT#"))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.items()
            .iter()
            .map(|item| {
                Ok(Activity {
                    event: serde_json::from_str(get_s(item, "event")?).map_err(corrupt)?,
                    applied: item
                        .get("applied")
                        .and_then(|v| v.as_s().ok())
                        .and_then(|v| serde_json::from_str(v).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn segment_page(
        &self,
        tag: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SegmentMember>, Option<String>), StoreError> {
        let start = match cursor {
            Some(c) => {
                let lead: LeadId = c
                    .parse()
                    .map_err(|_| StoreError::Corrupt("invalid cursor".into()))?;
                Some(HashMap::from([
                    ("pk".to_owned(), s(keys::segment_pk(tag))),
                    ("sk".to_owned(), s(keys::lead_pk(lead))),
                ]))
            }
            None => None,
        };
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::segment_pk(tag)))
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let members = out
            .items()
            .iter()
            .map(|item| {
                let weight = item
                    .get("weight")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                let at: DateTime<Utc> = get_s(item, "weight_at")?.parse().map_err(corrupt)?;
                Ok(SegmentMember {
                    lead_id: get_s(item, "lead_id")?.parse().map_err(corrupt)?,
                    weight,
                    at,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("sk"))
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| sk.strip_prefix("LEAD#"))
            .map(str::to_owned);
        Ok((members, next))
    }
}
