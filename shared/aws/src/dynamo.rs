//! The single-table DynamoDB store (see `docs/data-model.md`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use leadflow_domain::ports::{
    Counters, IdempotencyBegin, IdempotencyStore, LeadStore, LeadWrite, Outbox, OutboxEntry,
    StoreError, StoredResponse,
};
use leadflow_domain::{Email, EventEnvelope, Lead, LeadId, TimelineEntry};
use uuid::Uuid;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The sparse GSI that lists leads by stage and outbox events by due time.
pub const GSI1: &str = "gsi1";
/// The sparse GSI of leads whose next SLA step is due, by due time, in shards.
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
    pub fn stage_gsi1pk(lead: &Lead) -> String {
        format!("STAGE#{}", lead.stage)
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
    pub const OUTBOX_GSI1PK: &str = "OUTBOX";
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
    pub fn event_marker_pk(event_id: &str) -> String {
        format!("EVENT#{event_id}")
    }
    pub const EVENT_MARKER_SK: &str = "EVENT";
    pub fn anonymous_pk(key: &str) -> String {
        format!("ANON#{key}")
    }
    pub const ANONYMOUS_OWNER_SK: &str = "OWNER";
    pub fn segment_pk(tag: &str) -> String {
        format!("SEG#{tag}")
    }
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
            ("gsi1pk".into(), s(keys::OUTBOX_GSI1PK)),
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
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("gsi1pk = :pk AND gsi1sk < :now")
            .expression_attribute_values(":pk", s(keys::OUTBOX_GSI1PK))
            .expression_attribute_values(":now", s(sortable(now)))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.items()
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
            .collect()
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
