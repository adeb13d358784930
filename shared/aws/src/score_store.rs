//! Scores (with their activities and recently applied event ids), anonymous histories and
//! sharded segments in the single table (docs/data-model.md).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};
use leadflow_domain::anonymous::{self, HistoryPage};
use leadflow_domain::crm::Activity;
use leadflow_domain::lead_score::{LeadScore, SegmentMember};
use leadflow_domain::ports::{segment_shard, ScoreStore, ScoreWrite, StoreError, KEY_SHARDS};
use leadflow_domain::{LeadId, TrackedEvent};

use crate::dynamo::{keys, sortable, DynamoStore, Item};

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

/// The partition of a tag's segment members in one shard (`ports::segment_shard`).
fn segment_shard_pk(tag: &str, shard: u8) -> String {
    format!("SEG#{tag}#{shard:02}")
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

    /// One `PutItem` of the score record under its version when nothing else changes (most
    /// batches); otherwise one transaction of the record, the segment members whose weight
    /// moved and the outbox item of `LeadScored`, so that they land only with the record that
    /// decided them.
    async fn write_score(&self, w: &ScoreWrite) -> Result<(), StoreError> {
        let lead = w.score.lead_id;
        let now = w.score.updated_at;
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
        let put = put.build().map_err(corrupt)?;
        let conflict = || StoreError::VersionConflict {
            expected: w.expected_version.unwrap_or(0),
        };

        if w.members.is_empty() && w.events.is_empty() {
            let result = self
                .client()
                .put_item()
                .table_name(put.table_name())
                .set_item(Some(put.item().clone()))
                .set_condition_expression(put.condition_expression().map(str::to_owned))
                .set_expression_attribute_names(put.expression_attribute_names().cloned())
                .set_expression_attribute_values(put.expression_attribute_values().cloned())
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Err(conflict())
                }
                Err(e) => Err(StoreError::unavailable(e)),
            };
        }

        let mut items = Vec::with_capacity(1 + w.members.len() + w.events.len());
        // 0: the score record, under optimistic concurrency.
        items.push(TransactWriteItem::builder().put(put).build());
        let shard = segment_shard(lead);
        for (tag, weight) in &w.members {
            let member = HashMap::from([
                ("pk".to_owned(), s(segment_shard_pk(tag, shard))),
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
        if reasons
            .first()
            .is_some_and(|c| c == "ConditionalCheckFailed")
        {
            Err(conflict())
        } else if reasons.iter().any(|c| c == "TransactionConflict") {
            Err(StoreError::Busy)
        } else if reasons.is_empty() {
            // Emulators may cancel without reasons; only the record carries a condition, and
            // reading it again settles the question.
            Err(conflict())
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
    /// occurred. A redelivered event may take a second slot; the ids kept in the score record
    /// make it count once.
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

    /// Kept in the score record, so one read (strongly consistent, like the score's).
    async fn recent_activities(
        &self,
        lead: LeadId,
        limit: usize,
    ) -> Result<Vec<Activity>, StoreError> {
        let mut activities = self
            .score(lead)
            .await?
            .map(|s| s.activities)
            .unwrap_or_default();
        activities.truncate(limit);
        Ok(activities)
    }

    /// Every shard is queried for the members after the cursor (one `Query` each, together),
    /// and the pages are merged by lead id: a lead's member is in one shard only, so a lead id
    /// orders the whole segment and serves as the cursor.
    async fn segment_page(
        &self,
        tag: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SegmentMember>, Option<String>), StoreError> {
        let after = match cursor {
            Some(c) => {
                let lead: LeadId = c
                    .parse()
                    .map_err(|_| StoreError::Corrupt("invalid cursor".into()))?;
                Some(keys::lead_pk(lead))
            }
            None => None,
        };
        let limit = limit.clamp(1, 1000);
        let queries = (0..KEY_SHARDS).map(|shard| {
            let query = self
                .client()
                .query()
                .table_name(self.table())
                .expression_attribute_values(":pk", s(segment_shard_pk(tag, shard)))
                .limit(limit as i32);
            let query = match &after {
                Some(sk) => query
                    .key_condition_expression("pk = :pk AND sk > :after")
                    .expression_attribute_values(":after", s(sk.clone())),
                None => query.key_condition_expression("pk = :pk"),
            };
            query.send()
        });
        let mut members: Vec<(String, SegmentMember)> = Vec::new();
        let mut shard_has_more = false;
        for out in join_all(queries.collect()).await {
            let out = out.map_err(StoreError::unavailable)?;
            shard_has_more |= out.last_evaluated_key().is_some_and(|k| !k.is_empty());
            for item in out.items() {
                members.push((get_s(item, "sk")?.to_owned(), member(item)?));
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let more = shard_has_more || members.len() > limit;
        members.truncate(limit);
        let next = members
            .last()
            .filter(|_| more)
            .map(|(_, m)| m.lead_id.to_string());
        Ok((members.into_iter().map(|(_, m)| m).collect(), next))
    }
}

/// A segment member as stored.
fn member(item: &Item) -> Result<SegmentMember, StoreError> {
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
}

/// Runs the futures together and gives their outputs in order (the shards' queries).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
