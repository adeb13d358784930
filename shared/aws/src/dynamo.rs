//! The single-table DynamoDB store (see `docs/data-model.md`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use leadflow_domain::ports::{
    shard_of, Counters, IdempotencyBegin, IdempotencyStore, LeadStore, LeadWrite, Outbox,
    OutboxEntry, StoreError, StoredResponse, KEY_SHARDS,
};
use leadflow_domain::{Email, EventEnvelope, Lead, LeadId, TimelineEntry};
use uuid::Uuid;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The sparse GSI that lists leads by stage and outbox events by due time, both in shards.
pub const GSI1: &str = "gsi1";
/// The sparse GSI of leads whose next SLA step is due and of parked leads, by due time, in
/// shards.
pub const GSI2: &str = "gsi2";
/// How long an `Idempotency-Key` answers with its first response.
pub const IDEMPOTENCY_RETENTION: chrono::Duration = chrono::Duration::hours(24);
/// How long a request may hold an `Idempotency-Key` before a retry may take it over.
pub const IDEMPOTENCY_LOCK: chrono::Duration = chrono::Duration::seconds(60);
/// How long a writer owns its freshly written outbox events before the relay may take them.
pub const OUTBOX_WRITER_CLAIM: chrono::Duration = chrono::Duration::seconds(60);

pub mod keys {
    //! Key builders: the only place the key layout is spelled.
    use super::*;
    use leadflow_domain::ports::sla_shard;

    pub fn lead_pk(id: LeadId) -> String {
        format!("LEAD#{id}")
    }
    pub const LEAD_SK: &str = "LEAD";
    pub fn email_pk(email: &Email) -> String {
        format!("EMAIL#{email}")
    }
    pub const EMAIL_SK: &str = "EMAIL";
    /// `position` is the entry's place among those written together: entries of one change
    /// often share their time (a `resubmitted` and its `change_proposed`), and must read back
    /// in the order decided. The random rest keeps entries of different writes apart.
    pub fn timeline_sk(entry: &TimelineEntry, position: usize) -> String {
        let random = Uuid::new_v4().simple().to_string();
        format!(
            "TL#{}#{:04x}{}",
            sortable(entry.at),
            position.min(0xffff),
            &random[4..]
        )
    }
    /// A lead's entry in the stage index: `STAGE#<stage>#<NN>`, `NN` the lead's shard, so the
    /// leads of a stage (every capture lands in `Inquiry`) spread over [`KEY_SHARDS`]
    /// partitions; a report of a stage queries each of them (docs/data-model.md).
    pub fn stage_gsi1pk(lead: &Lead) -> String {
        format!("STAGE#{}#{:02}", lead.stage, sla_shard(lead.id))
    }
    pub fn sla_due_gsi2pk(shard: u8) -> String {
        format!("SLADUE#{shard:02}")
    }
    pub fn sla_due_gsi2sk(due: DateTime<Utc>, lead: LeadId) -> String {
        format!("{}#{lead}", sortable(due))
    }
    pub fn outbox_pk(event_id: Uuid) -> String {
        format!("OUTBOX#{event_id}")
    }
    pub const OUTBOX_SK: &str = "OUTBOX";
    /// An outbox partition of `gsi1`: `OUTBOX#<NN>`, `NN` the event id's shard. `None` is the
    /// one partition that items written before sharding sit in (`OUTBOX`): the relay reads it
    /// until a release drops it (docs/data-model.md, "Sharded index keys and the move to them").
    pub fn outbox_gsi1pk(shard: Option<u8>) -> String {
        // One literal for both spellings: tests/pipeline/iam.rs reads the family as `OUTBOX*`.
        format!("OUTBOX{}", shard_suffix(shard))
    }
    /// A partition of parked leads in `gsi2`: `ROUTEWAIT#<NN>`, `NN` the lead's shard; `None`
    /// is the partition of waits parked before sharding (`ROUTEWAIT`), read until a release
    /// drops it.
    pub fn route_wait_gsi2pk(shard: Option<u8>) -> String {
        format!("ROUTEWAIT{}", shard_suffix(shard))
    }
    fn shard_suffix(shard: Option<u8>) -> String {
        shard.map(|n| format!("#{n:02}")).unwrap_or_default()
    }
    pub fn idempotency_pk(key: &str) -> String {
        format!("IDEMP#{key}")
    }
    pub const IDEMPOTENCY_SK: &str = "IDEMP";
    pub fn counter_pk(name: &str) -> String {
        format!("COUNTER#{name}")
    }
    pub fn counter_sk(day: NaiveDate) -> String {
        format!("DAY#{day}")
    }
    pub const SCORE_SK: &str = "SCORE";
    pub fn anonymous_pk(key: &str) -> String {
        format!("ANON#{key}")
    }
    pub const ANONYMOUS_OWNER_SK: &str = "OWNER";
    /// A CRM's id for a lead; the CRM is named by its secret reference.
    pub fn crm_ref_pk(crm: &str, external_id: &str) -> String {
        format!("CRMREF#{crm}#{external_id}")
    }
    pub const CRM_REF_SK: &str = "CRMREF";
}

/// Timestamps in sort keys: fixed width, so string order is time order.
pub fn sortable(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Where the reading of one partition of a sharded index stands.
#[derive(Debug, Clone)]
pub(crate) struct ShardRead {
    /// The shard; `None` for the partition of items written before sharding.
    pub shard: Option<u8>,
    /// Where its next page starts (the last page's `LastEvaluatedKey`).
    pub start: Option<Item>,
    /// False once a page ended the partition.
    pub more: bool,
}

impl ShardRead {
    /// Every shard from its start, then the partition of items written before sharding.
    pub fn all_with_unsharded() -> Vec<ShardRead> {
        (0..KEY_SHARDS)
            .map(Some)
            .chain([None])
            .map(|shard| ShardRead {
                shard,
                start: None,
                more: true,
            })
            .collect()
    }
}

/// Passes over the partitions per read: the first gives each its share, the next ones give
/// what the short partitions left to those that may have more.
const FAIR_PASSES: usize = 4;

/// Reads up to `limit` items from the partitions of a sharded index, shared fairly: each pass
/// gives every partition that may have more an equal share of what is still wanted (the
/// remainder going to the partitions from `rotation` on), so a partition with a backlog gets
/// the slots the others leave, never those they need. `page(shard, start, n)` reads a page of
/// at most `n` items and returns them with where the next page starts. Partitions are read one
/// after the other: the readers (relay, tick) run once a minute and are not latency bound.
pub(crate) async fn read_fairly<F, Fut>(
    reads: &mut [ShardRead],
    limit: usize,
    rotation: usize,
    mut page: F,
) -> Result<Vec<Item>, StoreError>
where
    F: FnMut(Option<u8>, Option<Item>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Item>, Option<Item>), StoreError>>,
{
    let mut items = Vec::new();
    for _ in 0..FAIR_PASSES {
        let wanted = limit.saturating_sub(items.len());
        let open: Vec<usize> = (0..reads.len())
            .map(|k| (rotation + k) % reads.len())
            .filter(|&i| reads[i].more)
            .collect();
        if wanted == 0 || open.is_empty() {
            break;
        }
        let (share, extra) = (wanted / open.len(), wanted % open.len());
        for (k, &i) in open.iter().enumerate() {
            let n = share + usize::from(k < extra);
            if n == 0 {
                continue;
            }
            let read = &mut reads[i];
            let (page_items, next) = page(read.shard, read.start.take(), n).await?;
            read.more = next.is_some();
            read.start = next;
            items.extend(page_items);
        }
    }
    Ok(items)
}

/// leadflow's table: leads, e-mail lookups, timelines, outbox, idempotency records, counters.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn put(&self, item: Item) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(corrupt)
    }

    fn lead_item(lead: &Lead) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(lead).map_err(corrupt)?;
        item.insert("pk".into(), s(keys::lead_pk(lead.id)));
        item.insert("sk".into(), s(keys::LEAD_SK));
        item.insert("entity".into(), s("lead"));
        item.insert("gsi1pk".into(), s(keys::stage_gsi1pk(lead)));
        item.insert(
            "gsi1sk".into(),
            s(format!("{}#{}", sortable(lead.created_at), lead.id)),
        );
        // While an SLA ladder runs, the lead is listed in the due index by its next step.
        if let Some(due) = lead
            .assignment
            .as_ref()
            .and_then(|a| a.sla.as_ref())
            .and_then(|t| t.next_due)
        {
            item.insert(
                "gsi2pk".into(),
                s(keys::sla_due_gsi2pk(leadflow_domain::ports::sla_shard(
                    lead.id,
                ))),
            );
            item.insert("gsi2sk".into(), s(keys::sla_due_gsi2sk(due, lead.id)));
        }
        Ok(item)
    }

    fn timeline_item(
        id: LeadId,
        entry: &TimelineEntry,
        position: usize,
    ) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(entry).map_err(corrupt)?;
        item.insert("pk".into(), s(keys::lead_pk(id)));
        item.insert("sk".into(), s(keys::timeline_sk(entry, position)));
        item.insert("entity".into(), s("timeline"));
        Ok(item)
    }

    pub(crate) fn outbox_item(
        event: &EventEnvelope,
        claimed_until: DateTime<Utc>,
    ) -> Result<Item, StoreError> {
        let json = serde_json::to_string(event).map_err(corrupt)?;
        Ok(HashMap::from([
            ("pk".into(), s(keys::outbox_pk(event.event_id))),
            ("sk".into(), s(keys::OUTBOX_SK)),
            ("entity".into(), s("outbox")),
            (
                "gsi1pk".into(),
                s(keys::outbox_gsi1pk(Some(shard_of(event.event_id)))),
            ),
            (
                "gsi1sk".into(),
                s(format!("{}#{}", sortable(claimed_until), event.event_id)),
            ),
            ("claimed_until".into(), s(sortable(claimed_until))),
            ("detail_type".into(), s(event.detail_type())),
            ("lead_id".into(), s(event.lead_id.to_string())),
            ("event".into(), s(json)),
        ]))
    }

    /// The value of one of the table's tags (what the deployment recorded there, such as the
    /// CRM secret prefix); `None` when the table has no such tag.
    pub async fn table_tag(&self, key: &str) -> Result<Option<String>, StoreError> {
        let table = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let arn = table
            .table()
            .and_then(|t| t.table_arn())
            .ok_or_else(|| corrupt("the table has no ARN"))?;
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_tags_of_resource()
                .resource_arn(arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            if let Some(tag) = out.tags().iter().find(|t| t.key() == key) {
                return Ok(Some(tag.value().to_owned()));
            }
            match out.next_token() {
                Some(token) => next = Some(token.to_owned()),
                None => return Ok(None),
            }
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out.item().cloned())
    }

    /// The lead an ownership item names (an anonymous history's owner, a CRM's id link).
    pub(crate) async fn owner_at(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<LeadId>, StoreError> {
        let Some(item) = self.get_item(pk, sk).await? else {
            return Ok(None);
        };
        get_s(&item, "lead_id")
            .ok_or_else(|| corrupt("ownership item without lead_id"))?
            .parse()
            .map(Some)
            .map_err(corrupt)
    }

    /// Makes `lead` the owner of the item at `pk`/`sk` unless it has one (the first writer
    /// wins, by a conditional put); returns the owner.
    pub(crate) async fn claim_owner(
        &self,
        pk: String,
        sk: &str,
        entity: &str,
        lead: LeadId,
    ) -> Result<LeadId, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk.clone()))
            .item("sk", s(sk))
            .item("entity", s(entity))
            .item("lead_id", s(lead.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(lead),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.owner_at(pk, sk)
                    .await?
                    .ok_or_else(|| corrupt(format!("the {entity} item vanished")))
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

impl LeadStore for DynamoStore {
    async fn get(&self, id: LeadId) -> Result<Option<Lead>, StoreError> {
        match self.get_item(keys::lead_pk(id), keys::LEAD_SK).await? {
            Some(item) => serde_dynamo::from_item(item).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<Lead>, StoreError> {
        let Some(lookup) = self.get_item(keys::email_pk(email), keys::EMAIL_SK).await? else {
            return Ok(None);
        };
        let id: LeadId = get_s(&lookup, "lead_id")
            .ok_or_else(|| corrupt("e-mail lookup without lead_id"))?
            .parse()
            .map_err(corrupt)?;
        self.get(id).await
    }

    async fn write(&self, change: &LeadWrite) -> Result<(), StoreError> {
        let lead = &change.lead;
        let mut items = Vec::with_capacity(2 + change.timeline.len() + change.events.len());
        let lead_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::lead_item(lead)?));
        let lead_put = match change.expected_version {
            None => lead_put.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => lead_put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected)),
        };
        items.push(
            TransactWriteItem::builder()
                .put(lead_put.build().map_err(corrupt)?)
                .build(),
        );
        if change.expected_version.is_none() {
            // The lookup item makes the e-mail unique: of two concurrent captures of one e-mail,
            // exactly one transaction can create it.
            let lookup = HashMap::from([
                ("pk".to_owned(), s(keys::email_pk(&lead.email))),
                ("sk".to_owned(), s(keys::EMAIL_SK)),
                ("entity".to_owned(), s("email_lookup")),
                ("lead_id".to_owned(), s(lead.id.to_string())),
            ]);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(lookup))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for (position, entry) in change.timeline.iter().enumerate() {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(Self::timeline_item(lead.id, entry, position)?)?)
                    .build(),
            );
        }
        let claimed_until = change
            .events
            .first()
            .map(|e| e.occurred_at)
            .unwrap_or(lead.updated_at)
            + OUTBOX_WRITER_CLAIM;
        for event in &change.events {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put(Self::outbox_item(event, claimed_until)?)?)
                    .build(),
            );
        }

        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else { return Ok(()) };
        let canceled = err.as_service_error().and_then(|e| match e {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                Some(c.cancellation_reasons().iter().map(|r| r.code().unwrap_or_default().to_owned()).collect::<Vec<_>>())
            }
            _ => None,
        });
        let Some(reasons) = canceled else {
            return Err(StoreError::unavailable(err));
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        match change.expected_version {
            Some(expected) if failed(0) || reasons.is_empty() => {
                Err(StoreError::VersionConflict { expected })
            }
            None if failed(1) => Err(StoreError::EmailTaken),
            None if failed(0) => Err(StoreError::Corrupt(format!(
                "lead id {} exists already",
                lead.id
            ))),
            // Emulators may cancel without reasons; the lookup item tells what happened.
            None if reasons.is_empty() => match self
                .get_item(keys::email_pk(&lead.email), keys::EMAIL_SK)
                .await?
            {
                Some(_) => Err(StoreError::EmailTaken),
                None => Err(StoreError::unavailable(err)),
            },
            // DynamoDB cancels a transaction that collides with another one on an item
            // (TransactionConflict): the caller may retry at once.
            _ if reasons.iter().any(|c| c == "TransactionConflict") => Err(StoreError::Busy),
            _ => Err(StoreError::unavailable(format!(
                "transaction canceled: {}",
                reasons.join(", ")
            ))),
        }
    }

    async fn timeline(&self, id: LeadId) -> Result<Vec<TimelineEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :tl)")
                .expression_attribute_values(":pk", s(keys::lead_pk(id)))
                .expression_attribute_values(":tl", s("TL#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            for item in out.items() {
                entries.push(serde_dynamo::from_item(item.clone()).map_err(corrupt)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(entries),
            }
        }
    }

    async fn append_timeline(
        &self,
        id: LeadId,
        entries: &[TimelineEntry],
    ) -> Result<(), StoreError> {
        // One BatchWriteItem per 25 entries; what DynamoDB leaves unprocessed is sent again.
        for (c, chunk) in entries.chunks(25).enumerate() {
            let mut requests = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let put = aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(Self::timeline_item(id, e, c * 25 + i)?))
                        .build()
                        .map_err(corrupt)?;
                    Ok(aws_sdk_dynamodb::types::WriteRequest::builder()
                        .put_request(put)
                        .build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            for round in 0..5 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(StoreError::unavailable)?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if round == 4 {
                    return Err(StoreError::Busy);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << round)).await;
            }
        }
        Ok(())
    }
}

impl leadflow_domain::ports::CrmLinks for DynamoStore {
    async fn link_external_id(
        &self,
        crm: &str,
        external_id: &str,
        lead: LeadId,
    ) -> Result<LeadId, StoreError> {
        self.claim_owner(
            keys::crm_ref_pk(crm, external_id),
            keys::CRM_REF_SK,
            "crm_ref",
            lead,
        )
        .await
    }

    async fn lead_by_external_id(
        &self,
        crm: &str,
        external_id: &str,
    ) -> Result<Option<LeadId>, StoreError> {
        self.owner_at(keys::crm_ref_pk(crm, external_id), keys::CRM_REF_SK)
            .await
    }
}

impl Outbox for DynamoStore {
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        // Every shard, and the partition of items written before sharding (docs/data-model.md,
        // "Sharded index keys and the move to them", says which release drops it).
        let mut reads = ShardRead::all_with_unsharded();
        // Which partitions get the remainder of a share changes from run to run.
        let rotation = usize::from(Uuid::new_v4().as_bytes()[0]);
        let now_key = sortable(now);
        let items = read_fairly(
            &mut reads,
            limit.clamp(1, 1000),
            rotation,
            |shard, start, n| {
                let now_key = now_key.clone();
                async move {
                    let out = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(GSI1)
                        .key_condition_expression("gsi1pk = :pk AND gsi1sk < :now")
                        .expression_attribute_values(":pk", s(keys::outbox_gsi1pk(shard)))
                        .expression_attribute_values(":now", s(now_key))
                        .limit(i32::try_from(n).unwrap_or(1000))
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(StoreError::unavailable)?;
                    let next = out.last_evaluated_key().filter(|k| !k.is_empty()).cloned();
                    Ok((out.items().to_vec(), next))
                }
            },
        )
        .await?;
        let mut entries = items
            .iter()
            .map(|item| {
                let event = serde_json::from_str(
                    get_s(item, "event").ok_or_else(|| corrupt("outbox item without event"))?,
                )
                .map_err(corrupt)?;
                let claimed_until = get_s(item, "claimed_until")
                    .ok_or_else(|| corrupt("outbox item without claimed_until"))?
                    .parse()
                    .map_err(corrupt)?;
                Ok(OutboxEntry {
                    event,
                    claimed_until,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        entries.sort_by_key(|e| e.claimed_until);
        Ok(entries)
    }

    async fn claim(
        &self,
        event_id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::outbox_pk(event_id)))
            .key("sk", s(keys::OUTBOX_SK))
            .update_expression("SET claimed_until = :until, gsi1sk = :gsi1sk")
            .condition_expression("attribute_exists(pk) AND claimed_until < :now")
            .expression_attribute_values(":until", s(sortable(until)))
            .expression_attribute_values(":gsi1sk", s(format!("{}#{event_id}", sortable(until))))
            .expression_attribute_values(":now", s(sortable(now)))
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

    async fn complete(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        // Deletes of different items: one transaction round trip instead of one call each.
        for chunk in event_ids.chunks(100) {
            let items = chunk
                .iter()
                .map(|id| {
                    Delete::builder()
                        .table_name(&self.table)
                        .key("pk", s(keys::outbox_pk(*id)))
                        .key("sk", s(keys::OUTBOX_SK))
                        .build()
                        .map(|d| TransactWriteItem::builder().delete(d).build())
                        .map_err(corrupt)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
                .map_err(StoreError::unavailable)?;
        }
        Ok(())
    }
}

impl IdempotencyStore for DynamoStore {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyBegin, StoreError> {
        let expires_at = (now + IDEMPOTENCY_RETENTION).timestamp();
        let locked_until = (now + IDEMPOTENCY_LOCK).timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(keys::idempotency_pk(key)))
            .item("sk", s(keys::IDEMPOTENCY_SK))
            .item("entity", s("idempotency"))
            .item("state", s("in_progress"))
            .item("fingerprint", s(fingerprint))
            .item("locked_until", n(locked_until))
            .item("expires_at", n(expires_at))
            // TTL deletes late (up to days), so an expired record counts as absent here; so does
            // a lock left by a request that died.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#state = :in_progress AND locked_until < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":in_progress", s("in_progress"))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(IdempotencyBegin::Started),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(StoreError::unavailable(e)),
        }
        let Some(item) = self
            .get_item(keys::idempotency_pk(key), keys::IDEMPOTENCY_SK)
            .await?
        else {
            // Released between our put and get: let the client retry.
            return Ok(IdempotencyBegin::InProgress);
        };
        if get_s(&item, "fingerprint") != Some(fingerprint) {
            return Ok(IdempotencyBegin::Mismatch);
        }
        match (get_s(&item, "state"), get_s(&item, "response")) {
            (Some("done"), Some(json)) => Ok(IdempotencyBegin::Replay(
                serde_json::from_str(json).map_err(corrupt)?,
            )),
            _ => Ok(IdempotencyBegin::InProgress),
        }
    }

    async fn finish(
        &self,
        key: &str,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(response).map_err(corrupt)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::idempotency_pk(key)))
            .key("sk", s(keys::IDEMPOTENCY_SK))
            .update_expression("SET #state = :done, #response = :response, expires_at = :expires")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":response", s(json))
            .expression_attribute_values(":expires", n((now + IDEMPOTENCY_RETENTION).timestamp()))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(keys::idempotency_pk(key)))
            .key("sk", s(keys::IDEMPOTENCY_SK))
            .condition_expression("#state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s("in_progress"))
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

impl Counters for DynamoStore {
    async fn increment(&self, name: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::counter_pk(name)))
            .key("sk", s(keys::counter_sk(now.date_naive())))
            .update_expression("ADD #count :one SET entity = :entity")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":entity", s("counter"))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn count(&self, name: &str, day: NaiveDate) -> Result<u64, StoreError> {
        let item = self
            .get_item(keys::counter_pk(name), &keys::counter_sk(day))
            .await?;
        Ok(item
            .as_ref()
            .and_then(|i| i.get("count"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadflow_domain::TimelineAction;
    use std::collections::{BTreeMap, BTreeSet};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Runs a future whose every await is ready (the fake pages below): one poll.
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a fake page was pending"),
        }
    }

    /// Reads fake partitions (`sizes[i]` items in partition `i`; the last one is the
    /// unsharded partition) fairly, and returns how many items each gave.
    fn fair_read(sizes: &[usize], limit: usize, rotation: usize) -> (Vec<usize>, Vec<ShardRead>) {
        let mut reads = ShardRead::all_with_unsharded();
        assert_eq!(reads.len(), sizes.len());
        let index = |shard: Option<u8>| shard.map_or(sizes.len() - 1, usize::from);
        let items = ready(read_fairly(
            &mut reads,
            limit,
            rotation,
            |shard, start, n| {
                let from: usize = start
                    .and_then(|k| k.get("pos").and_then(|v| v.as_n().ok()?.parse().ok()))
                    .unwrap_or(0);
                let size = sizes[index(shard)];
                let to = (from + n).min(size);
                let page = (from..to)
                    .map(|_| Item::from([("part".to_owned(), n_attr(index(shard)))]))
                    .collect();
                let next = (to < size).then(|| Item::from([("pos".to_owned(), n_attr(to))]));
                std::future::ready(Ok((page, next)))
            },
        ))
        .expect("fake pages do not fail");
        let mut per = vec![0; sizes.len()];
        for item in items {
            let part: usize = item["part"].as_n().unwrap().parse().unwrap();
            per[part] += 1;
        }
        (per, reads)
    }

    fn n_attr(v: usize) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    fn sizes_with(hot: &[(usize, usize)]) -> Vec<usize> {
        let mut sizes = vec![0; usize::from(KEY_SHARDS) + 1];
        for &(i, n) in hot {
            sizes[i] = n;
        }
        sizes
    }

    #[test]
    fn a_backlog_in_one_shard_leaves_the_others_their_items() {
        // Shard 3 holds a backlog; shards 0 and 9 and the unsharded partition a few items.
        let sizes = sizes_with(&[(3, 500), (0, 2), (9, 4), (16, 1)]);
        for rotation in [0, 5, 16, 200] {
            let (per, reads) = fair_read(&sizes, 100, rotation);
            assert_eq!(per.iter().sum::<usize>(), 100, "a full page: {per:?}");
            assert_eq!((per[0], per[9], per[16]), (2, 4, 1), "{per:?}");
            assert_eq!(
                per[3], 93,
                "the backlog gets what the others leave: {per:?}"
            );
            let open: Vec<_> = reads.iter().filter(|r| r.more).map(|r| r.shard).collect();
            assert_eq!(open, vec![Some(3)], "only the backlog may have more");
        }
    }

    #[test]
    fn shards_with_backlogs_share_a_page_evenly() {
        let sizes = vec![50; usize::from(KEY_SHARDS) + 1];
        let (per, _) = fair_read(&sizes, 100, 7);
        assert_eq!(per.iter().sum::<usize>(), 100);
        let (min, max) = (per.iter().min().unwrap(), per.iter().max().unwrap());
        assert!(max - min <= 1, "an even share: {per:?}");
        // Fewer items than the page: all of them, and nothing left open.
        let (per, reads) = fair_read(&sizes_with(&[(1, 3), (15, 7)]), 100, 0);
        assert_eq!((per[1], per[15], per.iter().sum::<usize>()), (3, 7, 10));
        assert!(reads.iter().all(|r| !r.more));
    }

    fn lead(i: usize, now: DateTime<Utc>) -> Lead {
        let submission = leadflow_domain::SubmissionRules::default()
            .validate(&vec![("email".into(), format!("lead{i}@example.com"))])
            .expect("a valid form");
        Lead::capture(LeadId::new_at(now), submission, &Default::default(), now).lead
    }

    #[test]
    fn keys_every_lead_writes_spread_over_every_shard() {
        let now: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        let mut stage = BTreeMap::<String, usize>::new();
        let mut outbox = BTreeMap::<String, usize>::new();
        for i in 0..400 {
            let lead = lead(i, now);
            *stage.entry(keys::stage_gsi1pk(&lead)).or_default() += 1;
            let event =
                EventEnvelope::new(lead.id, now, leadflow_domain::LeadEvent::captured(&lead));
            let item = DynamoStore::outbox_item(&event, now).unwrap();
            let pk = get_s(&item, "gsi1pk").unwrap().to_owned();
            assert_eq!(pk, format!("OUTBOX#{:02}", shard_of(event.event_id)));
            *outbox.entry(pk).or_default() += 1;
        }
        // 400 random ids miss one of 16 shards with a probability of about 1e-10.
        let expected_stage: BTreeSet<String> = (0..KEY_SHARDS)
            .map(|n| format!("STAGE#Inquiry#{n:02}"))
            .collect();
        assert_eq!(
            stage.keys().cloned().collect::<BTreeSet<_>>(),
            expected_stage
        );
        assert_eq!(outbox.len(), usize::from(KEY_SHARDS), "{outbox:?}");
        assert!(
            outbox.values().all(|&n| n < 80),
            "no shard takes most: {outbox:?}"
        );
        assert_eq!(keys::outbox_gsi1pk(None), "OUTBOX");
        assert_eq!(keys::route_wait_gsi2pk(Some(7)), "ROUTEWAIT#07");
        assert_eq!(keys::route_wait_gsi2pk(None), "ROUTEWAIT");
    }

    /// An item's size as DynamoDB bills it: attribute names plus values (strings by their
    /// UTF-8 length, numbers at most 21 bytes).
    fn billed_size(item: &Item) -> usize {
        item.iter()
            .map(|(name, v)| {
                name.len()
                    + match v {
                        AttributeValue::S(s) => s.len(),
                        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                        other => panic!("not in outbox items: {other:?}"),
                    }
            })
            .sum()
    }

    /// docs/performance.md ("Partition keys at scale") counts a captured lead's copy in the
    /// stage index (projection `ALL`: the whole lead item) as 2 write units (at most 2 KB) for
    /// a full form without custom fields; custom fields add up to 16 KiB.
    #[test]
    fn a_full_form_lead_item_takes_two_write_units() {
        let now: DateTime<Utc> = "2026-03-01T10:00:00.123456Z".parse().unwrap();
        let form: Vec<(String, String)> = [
            ("email", "annemarie.schmidt-langenfeld@beispiel-industrie.example.com"),
            ("first_name", "Annemarie"),
            ("last_name", "Schmidt-Langenfeld"),
            ("company", "Beispiel Industrie- und Handelsgesellschaft mbH"),
            ("phone", "+49 30 123456789"),
            ("country", "DE"),
            ("postcode", "10115"),
            ("job_title", "Head of Procurement and Strategic Sourcing"),
            ("company_size", "1000-4999"),
            ("industry", "Manufacturing"),
            ("source", "google"),
            ("campaign", "2026-q1-dach-enterprise-analytics"),
            ("utm_source", "google"),
            ("utm_medium", "cpc"),
            ("utm_campaign", "2026-q1-dach-enterprise-analytics"),
            ("utm_term", "industrial analytics platform"),
            ("utm_content", "hero-variant-b"),
            (
                "landing_page_url",
                "https://www.example.com/de/analytics/enterprise?utm_source=google&utm_medium=cpc",
            ),
            ("visitor_id", "v-3f9a2c4e-8b1d-4e6f-a0c2-7d5e9b1f3a28"),
            ("consent", "on"),
            (
                "consent_text",
                "Ja, ich möchte Informationen zu Produkten und Veranstaltungen per E-Mail erhalten.",
            ),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let submission = leadflow_domain::SubmissionRules::default()
            .validate(&form)
            .expect("a valid form");
        let lead = Lead::capture(LeadId::new_at(now), submission, &Default::default(), now).lead;
        let item = DynamoStore::lead_item(&lead).unwrap();
        let size = billed_size_deep(&item);
        println!("lead item of a full form: {size} bytes");
        assert!(size <= 2048, "{size} bytes, more than two write units");
    }

    /// [`billed_size`] for items with maps and lists (the lead's).
    fn billed_size_deep(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(s) => s.len(),
                AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                AttributeValue::M(m) => {
                    3 + m.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>()
                }
                AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
                other => panic!("not in lead items: {other:?}"),
            }
        }
        item.iter().map(|(k, v)| k.len() + value(v)).sum()
    }

    /// docs/performance.md ("Partition keys at scale") counts the write units of outbox items
    /// (1 KB each): events carry ids and decisions, not the lead's contact data, so a capture's
    /// or a score's item is one unit, a routing decision up to two, and the largest event, a
    /// reassignment (two assignments, the first with its SLA steps, long names), three.
    #[test]
    fn outbox_items_take_the_write_units_the_performance_notes_count() {
        use leadflow_domain::assignment::{
            AssignedTo, Assignment, AssignmentEnd, AssignmentOutcome, SlaAction, SlaStepTaken,
            SlaTrack,
        };
        let now: DateTime<Utc> = "2026-03-01T10:00:00.123456Z".parse().unwrap();
        let lead = lead(1, now);
        let owner = |id: &str| AssignedTo::Owner {
            id: id.into(),
            name: "Annemarie Schmidt-Langenfeld".into(),
            email: "annemarie.schmidt-langenfeld@beispiel-vertrieb.example.com".into(),
        };
        let step = |n: u32, action| SlaStepTaken {
            step: n,
            action,
            due: now,
            at: now,
        };
        let assignment = |id: &str, steps: Vec<SlaStepTaken>| Assignment {
            assigned_to: owner(id),
            pool: "dach-enterprise-inbound".into(),
            rule: Some("enterprise-dach-hot-leads".into()),
            fast_track: false,
            config_version: 123,
            at: now,
            sla_deadline: now,
            accepted_at: None,
            sla: Some(SlaTrack {
                team: Some("dach-enterprise-sales".into()),
                hot: true,
                steps_taken: steps.len() as u32,
                next_due: Some(now),
                steps,
            }),
            delivered_at: Some(now),
            outcome: None,
        };
        let mut from = assignment(
            "annemarie-schmidt",
            vec![
                step(0, SlaAction::RemindOwner),
                step(1, SlaAction::RemindWithManager),
                step(2, SlaAction::EscalateToManager),
                step(3, SlaAction::Reassign),
            ],
        );
        from.outcome = Some(AssignmentOutcome {
            end: AssignmentEnd::Reassigned,
            at: now,
            waited_seconds: 345_600,
            waited_working_seconds: 115_200,
            system_seconds: Some(12),
            person_seconds: Some(345_588),
        });
        let events = [
            (
                1,
                leadflow_domain::LeadEvent::LeadCaptured {
                    source: Some("x".repeat(100)),
                    campaign: Some("y".repeat(100)),
                },
            ),
            (
                1,
                leadflow_domain::LeadEvent::LeadScored {
                    score: leadflow_domain::scoring::Points::from_cents(12_345),
                    band: leadflow_domain::scoring::ScoreBand::Mql,
                    grade: leadflow_domain::scoring::Grade::A,
                    temperature: leadflow_domain::scoring::Temperature::Hot,
                    product: Some("enterprise-analytics-suite".into()),
                    config_version: 123,
                },
            ),
            (
                2,
                leadflow_domain::LeadEvent::LeadRouted {
                    assignment: assignment("annemarie-schmidt", vec![]),
                },
            ),
            (
                3,
                leadflow_domain::LeadEvent::LeadReassigned {
                    from,
                    to: assignment("bernhard-oberhuber", vec![]),
                    step: Some(3),
                },
            ),
        ];
        for (units, event) in events {
            let name = event.name();
            let envelope = EventEnvelope::new(lead.id, now, event);
            let size = billed_size(&DynamoStore::outbox_item(&envelope, now).unwrap());
            println!("outbox item of {name}: {size} bytes");
            assert!(
                size <= units * 1024,
                "{name}: {size} bytes, more than {units} write unit(s)"
            );
        }
    }

    #[test]
    fn entries_written_together_keep_their_order_and_differ_from_other_writes() {
        let entry = TimelineEntry::system(
            "2026-03-01T10:00:00Z".parse().unwrap(),
            TimelineAction::Resubmitted,
            serde_json::Value::Null,
        );
        for _ in 0..200 {
            let first = keys::timeline_sk(&entry, 0);
            let second = keys::timeline_sk(&entry, 1);
            assert!(first < second, "{first} / {second}");
            assert_ne!(first, keys::timeline_sk(&entry, 0));
            assert_eq!(first.len(), "TL#2026-03-01T10:00:00.000000Z#".len() + 32);
        }
        let tenth = keys::timeline_sk(&entry, 10);
        assert!(tenth > keys::timeline_sk(&entry, 9));
    }
}
