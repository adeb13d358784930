//! The SLA due index (the sparse GSI `gsi2` of lead items), leads parked until routing can
//! place them (their own items, listed in `gsi2` under `ROUTEWAIT`), and owners' away periods
//! (docs/data-model.md).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use leadflow_domain::ports::RoutingWaits;
use leadflow_domain::ports::{Availability, Away, DueLead, SlaDueIndex, StoreError};
use leadflow_domain::routing::RoutingWait;
use leadflow_domain::LeadId;

use crate::dynamo::{keys, sortable, DynamoStore, Item, GSI2};

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
/// keys may touch it.
const ROUTE_WAIT_SK: &str = "ROUTEWAIT";
/// The one `gsi2` partition of parked leads: they are few (an incident parks at most the MQLs
/// of its hours), and sla-tick reads them all each minute.
const ROUTE_WAIT_GSI2PK: &str = "ROUTEWAIT";

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
            .item("gsi2pk", s(ROUTE_WAIT_GSI2PK))
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
        // keys from its own body.)
        let upper = format!("{}#~", sortable(until));
        let start = cursor.map(|c| {
            Item::from([
                ("gsi2pk".to_owned(), s(ROUTE_WAIT_GSI2PK)),
                ("gsi2sk".to_owned(), s(c)),
                (
                    "pk".to_owned(),
                    s(format!("LEAD#{}", c.rsplit('#').next().unwrap_or_default())),
                ),
                ("sk".to_owned(), s(ROUTE_WAIT_SK)),
            ])
        });
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(GSI2)
            .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :upper")
            .expression_attribute_values(":pk", s(ROUTE_WAIT_GSI2PK))
            .expression_attribute_values(":upper", s(upper))
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let mut waits = Vec::with_capacity(out.items().len());
        for item in out.items() {
            let sk = string(item, "gsi2sk")?;
            let (_, lead) = sk
                .rsplit_once('#')
                .ok_or_else(|| corrupt("a routing wait without its lead"))?;
            let lead: LeadId = lead.parse().map_err(corrupt)?;
            // Gone since the query (routed and ended): nothing to do.
            if let Some(wait) = self.routing_wait(lead).await? {
                waits.push(wait);
            }
        }
        let next = out
            .last_evaluated_key()
            .filter(|k| !k.is_empty())
            .and_then(|k| k.get("gsi2sk"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok((waits, next))
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
