//! Counting the AWS requests a process makes, by service and operation: an SDK interceptor that
//! the local stack attaches to the clients of its in-process handlers ([`crate::Clients::counted`]),
//! so that tests and benches can tell what a lead costs in requests. The Lambda binaries build
//! their clients with [`crate::Clients::from_env`] and carry no interceptor at all.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// An SDK operation: the service as the SDK names it (`DynamoDB`, `SQS`, `EventBridge`,
/// `SecretsManager`) and the operation (`PutItem`, `SendMessage`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operation {
    pub service: String,
    pub name: String,
}

impl Operation {
    pub fn new(service: &str, name: &str) -> Self {
        Self {
            service: service.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.name)
    }
}

/// What one operation was used for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Calls the code made (one per `send()`).
    pub calls: u64,
    /// HTTP requests sent: calls plus the SDK's retries. AWS bills these.
    pub attempts: u64,
    /// Items or entries the calls carried: the items of a `BatchWriteItem`, `TransactWriteItems`,
    /// `BatchGetItem` or `TransactGetItems`, the entries of a `PutEvents`, `SendMessageBatch` or
    /// `DeleteMessageBatch`; 1 for every other call.
    pub items: u64,
}

impl Count {
    fn saturating_sub(self, earlier: Count) -> Count {
        Count {
            calls: self.calls.saturating_sub(earlier.calls),
            attempts: self.attempts.saturating_sub(earlier.attempts),
            items: self.items.saturating_sub(earlier.items),
        }
    }

    fn is_zero(&self) -> bool {
        *self == Count::default()
    }
}

/// The counts at one moment, by operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTally(pub BTreeMap<Operation, Count>);

/// DynamoDB operations that write items.
const DYNAMODB_WRITES: [&str; 4] = ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"];

impl RequestTally {
    /// What happened since `earlier` (a snapshot of the same counter); operations without any
    /// use in between are left out.
    pub fn since(&self, earlier: &RequestTally) -> RequestTally {
        RequestTally(
            self.0
                .iter()
                .map(|(op, c)| {
                    let before = earlier.0.get(op).copied().unwrap_or_default();
                    (op.clone(), c.saturating_sub(before))
                })
                .filter(|(_, c)| !c.is_zero())
                .collect(),
        )
    }

    pub fn get(&self, service: &str, name: &str) -> Count {
        self.0
            .get(&Operation::new(service, name))
            .copied()
            .unwrap_or_default()
    }

    /// Items written to DynamoDB: one per `PutItem`, `UpdateItem` or `DeleteItem` request, and
    /// one per item of a `BatchWriteItem` or `TransactWriteItems` (a transaction of k items is
    /// k writes; on-demand bills each transactional item twice, see docs/cost.md).
    pub fn dynamodb_item_writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|(op, _)| op.service == "DynamoDB")
            .map(|(op, c)| match op.name.as_str() {
                "TransactWriteItems" => c.items,
                name if DYNAMODB_WRITES.contains(&name) => c.items,
                _ => 0,
            })
            .sum()
    }

    /// Every request sent (attempts), all services together.
    pub fn attempts(&self) -> u64 {
        self.0.values().map(|c| c.attempts).sum()
    }
}

impl fmt::Display for RequestTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<22} {:>6} {:>8} {:>6}",
            "service", "operation", "calls", "attempts", "items"
        )?;
        for (op, c) in &self.0 {
            writeln!(
                f,
                "{:<16} {:<22} {:>6} {:>8} {:>6}",
                op.service, op.name, c.calls, c.attempts, c.items
            )?;
        }
        write!(
            f,
            "{} requests; {} DynamoDB item writes",
            self.attempts(),
            self.dynamodb_item_writes()
        )
    }
}

/// A shared counter of the requests of every client it is attached to. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct RequestCounts {
    inner: Arc<Mutex<RequestTally>>,
}

impl RequestCounts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> RequestTally {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The interceptor to put on a client's configuration (`.interceptor(...)` of any SDK
    /// crate's `config::Builder`).
    pub fn interceptor(&self) -> SharedInterceptor {
        SharedInterceptor::new(CountingInterceptor {
            counts: self.clone(),
        })
    }

    fn add(&self, cfg: &ConfigBag, add: impl FnOnce(&mut Count)) {
        // Every generated operation puts its Metadata into the bag; anything else is not an
        // AWS operation we could name.
        let Some(meta) = cfg.load::<Metadata>() else {
            return;
        };
        let op = Operation::new(meta.service(), meta.name());
        let mut tally = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        add(tally.0.entry(op).or_default());
    }
}

#[derive(Debug)]
struct CountingInterceptor {
    counts: RequestCounts,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "RequestCounts"
    }

    // Once per call, while the typed input is still there to count its items.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let items = items_of(context.input());
        self.counts.add(cfg, |c| {
            c.calls += 1;
            c.items += items;
        });
        Ok(())
    }

    // Once per HTTP request, retries included.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.counts.add(cfg, |c| c.attempts += 1);
        Ok(())
    }
}

/// The items or entries a batch or transaction carries; 1 for any other input.
fn items_of(input: &aws_smithy_runtime_api::client::interceptors::context::Input) -> u64 {
    #[cfg(feature = "dynamodb")]
    {
        use aws_sdk_dynamodb::operation as ddb;
        if let Some(i) = input.downcast_ref::<ddb::transact_write_items::TransactWriteItemsInput>()
        {
            return i.transact_items().len() as u64;
        }
        if let Some(i) = input.downcast_ref::<ddb::batch_write_item::BatchWriteItemInput>() {
            return i
                .request_items()
                .map_or(0, |m| m.values().map(Vec::len).sum::<usize>()) as u64;
        }
        if let Some(i) = input.downcast_ref::<ddb::transact_get_items::TransactGetItemsInput>() {
            return i.transact_items().len() as u64;
        }
        if let Some(i) = input.downcast_ref::<ddb::batch_get_item::BatchGetItemInput>() {
            return i
                .request_items()
                .map_or(0, |m| m.values().map(|k| k.keys().len()).sum::<usize>())
                as u64;
        }
    }
    #[cfg(feature = "eventbridge")]
    if let Some(i) =
        input.downcast_ref::<aws_sdk_eventbridge::operation::put_events::PutEventsInput>()
    {
        return i.entries().len() as u64;
    }
    #[cfg(feature = "sqs")]
    {
        use aws_sdk_sqs::operation as sqs;
        if let Some(i) = input.downcast_ref::<sqs::send_message_batch::SendMessageBatchInput>() {
            return i.entries().len() as u64;
        }
        if let Some(i) = input.downcast_ref::<sqs::delete_message_batch::DeleteMessageBatchInput>()
        {
            return i.entries().len() as u64;
        }
    }
    let _ = input;
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(rows: &[(&str, &str, u64, u64)]) -> RequestTally {
        RequestTally(
            rows.iter()
                .map(|(s, n, calls, items)| {
                    (
                        Operation::new(s, n),
                        Count {
                            calls: *calls,
                            attempts: *calls,
                            items: *items,
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn item_writes_count_every_item_of_a_batch_or_transaction_and_no_reads() {
        let t = tally(&[
            ("DynamoDB", "PutItem", 2, 2),
            ("DynamoDB", "UpdateItem", 1, 1),
            ("DynamoDB", "DeleteItem", 1, 1),
            ("DynamoDB", "TransactWriteItems", 2, 7),
            ("DynamoDB", "BatchWriteItem", 1, 25),
            ("DynamoDB", "GetItem", 5, 5),
            ("DynamoDB", "TransactGetItems", 1, 3),
            ("SQS", "DeleteMessage", 4, 4),
        ]);
        assert_eq!(t.dynamodb_item_writes(), 2 + 1 + 1 + 7 + 25);
        assert_eq!(t.attempts(), 17);
    }

    #[test]
    fn since_keeps_only_what_changed() {
        let before = tally(&[("DynamoDB", "PutItem", 2, 2), ("SQS", "SendMessage", 1, 1)]);
        let after = tally(&[
            ("DynamoDB", "PutItem", 5, 5),
            ("SQS", "SendMessage", 1, 1),
            ("EventBridge", "PutEvents", 1, 3),
        ]);
        let d = after.since(&before);
        assert_eq!(d.0.len(), 2);
        assert_eq!(d.get("DynamoDB", "PutItem").calls, 3);
        assert_eq!(d.get("EventBridge", "PutEvents").items, 3);
        assert_eq!(d.get("SQS", "SendMessage"), Count::default());
    }
}
