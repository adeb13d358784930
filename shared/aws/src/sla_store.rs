//! The SLA due index (the sparse GSI `gsi2` of lead items), leads parked until routing can
//! place them (their own items, listed in `gsi2` under `ROUTEWAIT#<NN>`, in shards), and
//! owners' away periods (docs/data-model.md).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use leadflow_domain::ports::{sla_shard, RoutingWaits};
use leadflow_domain::ports::{Availability, Away, DueLead, SlaDueIndex, StoreError};
use leadflow_domain::routing::RoutingWait;
use leadflow_domain::LeadId;

use crate::dynamo::{keys, read_fairly, sortable, DynamoStore, Item, ShardRead, GSI2};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

const AWAY_PK: &str = "AWAY";

fn away_sk(owner: &str) -> String {
    format!("OWNER#{owner}")
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("item without {name}")))
}

impl SlaDueIndex for DynamoStore {
    async fn due_leads(
        &self,
        shard: u8,
        until: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<DueLead>, Option<String>), StoreError> {
        let pk = keys::sla_due_gsi2pk(shard);
        // Entries sort by `<due>#<lead>`: everything up to `until` sorts before `<until>#~`.
        let upper = format!("{}#~", sortable(until));
        let start = cursor.map(|c| {
            Item::from([
                ("gsi2pk".to_owned(), s(pk.clone())),
                ("gsi2sk".to_owned(), s(c)),
                (
                    "pk".to_owned(),
                    s(format!("LEAD#{}", c.rsplit('#').next().unwrap_or_default())),
                ),
                ("sk".to_owned(), s(keys::LEAD_SK)),
            ])
        });
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI2)
            .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :upper")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":upper", s(upper))
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let mut leads = Vec::with_capacity(out.items().len());
        for item in out.items() {
            let sk = string(item, "gsi2sk")?;
            let (due, lead) = sk
                .rsplit_once('#')
                .ok_or_else(|| corrupt("a due entry without its lead"))?;
            leads.push(DueLead {
                lead_id: lead.parse().map_err(corrupt)?,
                due: due.parse().map_err(corrupt)?,
            });
        }
        let next = out
            .last_evaluated_key()
            .filter(|k| !k.is_empty())
            .and_then(|k| k.get("gsi2sk"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok((leads, next))
    }
}

/// A parked lead's item sits beside the lead (`LEAD#<id>`), so whatever may touch the lead's
/// keys may touch it. In `gsi2` it is listed under its lead's shard
/// (`keys::route_wait_gsi2pk`): an incident may park every MQL of its hours, and parking each
/// of them in one partition would make that partition the hot key.
const ROUTE_WAIT_SK: &str = "ROUTEWAIT";

/// A `waits_due` cursor: where each partition that may have more stands, as
/// `<NN or ->=<last gsi2sk or nothing>` joined by `|` (`-` is the partition of waits parked
/// before sharding). A partition left out is done.
fn wait_cursor(reads: &[ShardRead]) -> Option<String> {
    let open: Vec<String> = reads
        .iter()
        .filter(|r| r.more)
        .map(|r| {
            let shard = r.shard.map_or("-".to_owned(), |n| format!("{n:02}"));
            let last = r
                .start
                .as_ref()
                .and_then(|k| k.get("gsi2sk"))
                .and_then(|v| v.as_s().ok())
                .map_or("", String::as_str);
            format!("{shard}={last}")
        })
        .collect();
    (!open.is_empty()).then(|| open.join("|"))
}

/// The partitions a `waits_due` cursor says may have more, each with where it stands.
fn wait_reads(cursor: Option<&str>) -> Result<Vec<ShardRead>, StoreError> {
    let Some(cursor) = cursor else {
        return Ok(ShardRead::all_with_unsharded());
    };
    cursor
        .split('|')
        .map(|part| {
            let (shard, last) = part
                .split_once('=')
                .ok_or_else(|| corrupt(format!("a routing wait cursor without '=': {part}")))?;
            let shard = match shard {
                "-" => None,
                n => Some(n.parse::<u8>().map_err(corrupt)?),
            };
            let start = (!last.is_empty()).then(|| {
                Item::from([
                    ("gsi2pk".to_owned(), s(keys::route_wait_gsi2pk(shard))),
                    ("gsi2sk".to_owned(), s(last)),
                    (
                        "pk".to_owned(),
                        s(format!(
                            "LEAD#{}",
                            last.rsplit('#').next().unwrap_or_default()
                        )),
                    ),
                    ("sk".to_owned(), s(ROUTE_WAIT_SK)),
                ])
            });
            Ok(ShardRead {
                shard,
                start,
                more: true,
            })
        })
        .collect()
}

impl RoutingWaits for DynamoStore {
    async fn routing_wait(&self, lead: LeadId) -> Result<Option<RoutingWait>, StoreError> {
        let Some(item) = self.get_item(keys::lead_pk(lead), ROUTE_WAIT_SK).await? else {
            return Ok(None);
        };
        serde_json::from_str(string(&item, "wait")?)
            .map(Some)
            .map_err(corrupt)
    }

    async fn park(&self, wait: &RoutingWait) -> Result<(), StoreError> {
        let json = serde_json::to_string(wait).map_err(corrupt)?;
        self.client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(keys::lead_pk(wait.lead_id)))
            .item("sk", s(ROUTE_WAIT_SK))
            .item("entity", s("routing_wait"))
            .item(
                "gsi2pk",
                s(keys::route_wait_gsi2pk(Some(sla_shard(wait.lead_id)))),
            )
            .item("gsi2sk", s(keys::sla_due_gsi2sk(wait.until, wait.lead_id)))
            .item("wait", s(json))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn end_wait(&self, wait: &RoutingWait) -> Result<(), StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .key("pk", s(keys::lead_pk(wait.lead_id)))
            .key("sk", s(ROUTE_WAIT_SK))
            .condition_expression("gsi2sk = :until")
            .expression_attribute_values(
                ":until",
                s(keys::sla_due_gsi2sk(wait.until, wait.lead_id)),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Parked again meanwhile (or gone already): that wait stays as it is.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn waits_due(
        &self,
        until: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<RoutingWait>, Option<String>), StoreError> {
        // The index holds keys only (sla-tick's due index): the wait is read from its item.
        // (The query repeats due_leads' on purpose: tests/pipeline/iam.rs reads each method's
        // keys from its own body.) Every shard and the partition of waits parked before
        // sharding (docs/data-model.md, "Sharded index keys and the move to them"), each page
        // shared fairly among them.
        let upper = format!("{}#~", sortable(until));
        let mut reads = wait_reads(cursor)?;
        let rotation = usize::from(uuid::Uuid::new_v4().as_bytes()[0]);
        let items = read_fairly(
            &mut reads,
            limit.clamp(1, 1000),
            rotation,
            |shard, start, n| {
                let upper = upper.clone();
                async move {
                    let out = self
                        .client()
                        .query()
                        .table_name(self.table())
                        .index_name(GSI2)
                        .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :upper")
                        .expression_attribute_values(":pk", s(keys::route_wait_gsi2pk(shard)))
                        .expression_attribute_values(":upper", s(upper))
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
        // Earliest first across the partitions: `gsi2sk` sorts by `until`.
        let mut due = Vec::with_capacity(items.len());
        for item in &items {
            let sk = string(item, "gsi2sk")?;
            let (_, lead) = sk
                .rsplit_once('#')
                .ok_or_else(|| corrupt("a routing wait without its lead"))?;
            due.push((sk, lead.parse::<LeadId>().map_err(corrupt)?));
        }
        due.sort();
        let mut waits = Vec::with_capacity(due.len());
        for (_, lead) in due {
            // Gone since the query (routed and ended): nothing to do.
            if let Some(wait) = self.routing_wait(lead).await? {
                waits.push(wait);
            }
        }
        Ok((waits, wait_cursor(&reads)))
    }
}

impl Availability for DynamoStore {
    async fn absences(&self) -> Result<Vec<Away>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(AWAY_PK))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.items()
            .iter()
            .map(|item| serde_dynamo::from_item(item.clone()).map_err(corrupt))
            .collect()
    }

    async fn set_away(&self, away: &Away) -> Result<(), StoreError> {
        let mut item: Item = serde_dynamo::to_item(away).map_err(corrupt)?;
        item.insert("pk".into(), s(AWAY_PK));
        item.insert("sk".into(), s(away_sk(&away.owner)));
        item.insert("entity".into(), s("away"));
        // Gone (table TTL) a month after the period ended.
        let end = away
            .to
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(away.at);
        item.insert(
            "expires_at".into(),
            AttributeValue::N((end + chrono::Duration::days(31)).timestamp().to_string()),
        );
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn clear_away(&self, owner: &str) -> Result<bool, StoreError> {
        let out = self
            .client()
            .delete_item()
            .table_name(self.table())
            .key("pk", s(AWAY_PK))
            .key("sk", s(away_sk(owner)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}
