//! Scores, event markers, activities, anonymous histories and segments in the single table
//! (docs/data-model.md).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};
use leadflow_domain::anonymous::{self, HistoryPage};
use leadflow_domain::crm::Activity;
use leadflow_domain::lead_score::{LeadScore, SegmentMember};
use leadflow_domain::ports::{ScoreStore, ScoreWrite, StoreError};
use leadflow_domain::{LeadId, TrackedEvent};

use crate::dynamo::{keys, sortable, DynamoStore, Item};

/// Markers outlive the oldest event POST /events accepts (90 days), so a late redelivery is
/// still recognised.
const MARKER_RETENTION: Duration = Duration::days(100);
/// Beside `ANON#<key>`'s owner: how many events were ever parked under the key (it hands out
/// the ring's slots).
const ANONYMOUS_COUNTER_SK: &str = "PARKED";
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

/// The sort key of an anonymous history's slot (zero-padded, so slots sort by number).
fn slot_key(slot: u64) -> String {
    format!("EV#{slot:04}")
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

    /// A ring of [`anonymous::MAX_EVENTS`] slots per key: a counter item hands out the next
    /// slot atomically, and the event overwrites whatever that slot held (the event parked
    /// longest ago). Two writes per event whatever the key's size, no deletes, and the key never
    /// holds more than the bound; the TTL removes events [`anonymous::MAX_AGE`] after they
    /// occurred. A redelivered event may take a second slot; the join's event markers score it
    /// once.
    async fn park_anonymous(&self, key: &str, event: &TrackedEvent) -> Result<(), StoreError> {
        let pk = keys::anonymous_pk(key);
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(pk.clone()))
            .key("sk", s(ANONYMOUS_COUNTER_SK))
            .update_expression("SET entity = :entity, expires_at = :exp ADD parked :one")
            .expression_attribute_values(":entity", s("anonymous_counter"))
            // Outlives every event it counted (they occurred at most a few minutes from now).
            .expression_attribute_values(
                ":exp",
                n((Utc::now() + anonymous::MAX_AGE + Duration::days(1)).timestamp()),
            )
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let parked: u64 = out
            .attributes()
            .and_then(|a| a.get("parked"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("anonymous counter without parked"))?;
        self.client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(pk))
            .item("sk", s(slot_key(anonymous::slot(parked))))
            .item("entity", s("anonymous_event"))
            .item("event", s(serde_json::to_string(event).map_err(corrupt)?))
            .item("expires_at", n(anonymous::expires_at(event).timestamp()))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn anonymous_events(&self, key: &str) -> Result<Vec<TrackedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .anonymous_page(key, cursor.as_deref(), anonymous::MAX_EVENTS as usize)
                .await?;
            events.extend(page.events);
            match page.cursor {
                Some(c) if page.more => cursor = Some(c),
                _ => return Ok(events),
            }
        }
    }

    async fn anonymous_page(
        &self,
        key: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let pk = keys::anonymous_pk(key);
        let start = cursor
            .map(|sk| HashMap::from([("pk".to_owned(), s(pk.clone())), ("sk".to_owned(), s(sk))]));
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :ev)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":ev", s("EV#"))
            .consistent_read(true)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let mut page = HistoryPage {
            more: out.last_evaluated_key().is_some_and(|k| !k.is_empty()),
            ..HistoryPage::default()
        };
        for item in out.items() {
            let event = get_s(item, "event")
                .ok()
                .and_then(|e| serde_json::from_str::<TrackedEvent>(e).ok());
            match event {
                Some(e) => page.events.push(e),
                None => page.unreadable += 1,
            }
            page.cursor = Some(get_s(item, "sk")?.to_owned());
        }
        Ok(page)
    }

    async fn join_cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        let owner = self
            .get_item(keys::anonymous_pk(key), keys::ANONYMOUS_OWNER_SK)
            .await?;
        Ok(owner
            .as_ref()
            .and_then(|item| get_s(item, "joined_through").ok())
            .map(str::to_owned))
    }

    async fn save_join_cursor(
        &self,
        key: &str,
        lead: LeadId,
        cursor: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(keys::anonymous_pk(key)))
            .key("sk", s(keys::ANONYMOUS_OWNER_SK))
            .update_expression("SET joined_through = :c")
            .condition_expression(
                "lead_id = :lead AND (attribute_not_exists(joined_through) OR joined_through < :c)",
            )
            .expression_attribute_values(":c", s(cursor))
            .expression_attribute_values(":lead", s(lead.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A concurrent delivery of the same join got further: its cursor stands.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::unavailable(e)),
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
