//! The catalog in one DynamoDB table (single-table design, keys `pk` / `sk`, TTL attribute `expires_at`).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | backup record | `TARGET#<target>` | `BACKUP#<backup id>` (ids sort by time) |
//! | lease | `TARGET#<target>` | `LEASE#<job>` |
//! | idempotency claim | `EVENT#<key>` | `TARGET#<target>` |
//! | run record | `RUN#<job>` | `<started at, RFC 3339>#<run id>` |
//! | restore drill | `TARGET#<target>` | `DRILL#<drill id>` (ids sort by time) |
//! | monitor alert state | `TARGET#<target>` | `ALERT#<check>` |
//! | server inventory | `INVENTORY` | `SERVER#<server target>` |
//!
//! Every state change is a conditional write; a failed condition becomes [`CatalogError::Conflict`] or, for
//! leases and claims, an answer ("held by …"). Records are stored attribute by attribute (readable in the
//! console), converted from their serde form.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::aws_failure;
use crate::domain::discovery::ServerInventory;
use crate::domain::drill::{DrillPhase, DrillRecord};
use crate::domain::health::AlertState;
use crate::domain::{BackupId, BackupRecord, BackupStatus, Job, RunRecord};
use crate::ports::*;

/// Run records are kept this long, then DynamoDB's TTL removes them.
const RUN_RETENTION_DAYS: i64 = 90;

type Item = HashMap<String, AttributeValue>;

pub struct DynamoCatalog {
    client: Client,
    table: String,
}

impl DynamoCatalog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoCatalog { client, table: table.into() }
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>, CatalogError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(out.item)
    }

    /// Puts `item` if `condition` holds; `Ok(false)` when it does not.
    async fn put_if(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, CatalogError> {
        let mut request =
            self.client.put_item().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        for (k, v) in names {
            request = request.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    async fn delete_if_owner(&self, pk: String, sk: String, owner: &str) -> Result<(), CatalogError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else owns it now (our lease expired and was taken over): theirs to release.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(backend("DeleteItem", e)),
        }
    }

    /// The newest `limit` items of a partition, page after page: one Query page stops at 1 MB, and purge must
    /// see every backup of a target. With `except`, the same `limit` newest items are read, and those whose
    /// attribute has the value given are left out by DynamoDB (a Query's `Limit` counts the items read, before
    /// its filter), so they never cross the wire.
    async fn query_newest(
        &self,
        pk: String,
        sk_prefix: Option<&str>,
        limit: usize,
        except: Option<Except>,
    ) -> Result<Vec<Item>, CatalogError> {
        self.query_newest_in(pk, sk_prefix, None, limit, except).await
    }

    /// The newest `limit` items under `sk_prefix` (up to `upper`, inclusive, when given) that read as `T`, or all
    /// there are: an unreadable item is left out ([`readable`]) and one more is read in its place, so a caller
    /// that finds fewer than it asked for knows the list is exhausted (the monitor reads on until a verdict).
    async fn newest_readable<T: DeserializeOwned>(
        &self,
        pk: String,
        sk_prefix: &str,
        upper: Option<&str>,
        limit: usize,
        what: &str,
    ) -> Result<Vec<T>, CatalogError> {
        // Past this many unreadable items, the rest of the list is not worth reading for them.
        const MORE_FOR_UNREADABLE: usize = 1_000;
        let mut asked = limit;
        loop {
            let items = self.query_newest_in(pk.clone(), Some(sk_prefix), upper, asked, None).await?;
            let exhausted = items.len() < asked;
            let mut read: Vec<T> = readable(items, what);
            if read.len() >= limit || exhausted || asked >= limit + MORE_FOR_UNREADABLE {
                read.truncate(limit);
                return Ok(read);
            }
            asked += limit - read.len();
        }
    }

    async fn query_newest_in(
        &self,
        pk: String,
        sk_prefix: Option<&str>,
        sk_upper: Option<&str>,
        limit: usize,
        except: Option<Except>,
    ) -> Result<Vec<Item>, CatalogError> {
        let mut items = Vec::new();
        let mut read = 0;
        let mut start_key = None;
        while read < limit {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .scan_index_forward(false)
                .limit((limit - read).clamp(1, 1000) as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start_key);
            request = match (sk_prefix, sk_upper) {
                (Some(prefix), Some(upper)) => request
                    .key_condition_expression("pk = :pk AND sk BETWEEN :prefix AND :upper")
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string()))
                    .expression_attribute_values(":upper", AttributeValue::S(upper.to_string())),
                (Some(prefix), None) => request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_string())),
                (None, _) => request.key_condition_expression("pk = :pk"),
            };
            if let Some(except) = &except {
                request = request
                    .filter_expression("#except <> :except")
                    .expression_attribute_names("#except", except.attribute)
                    .expression_attribute_values(":except", AttributeValue::S(except.value.to_string()));
            }
            let out = request.send().await.map_err(|e| backend("Query", e))?;
            let page = out.items.unwrap_or_default();
            // Without a filter every item read is returned; with one, the count read is ScannedCount.
            read += if except.is_some() { usize::try_from(out.scanned_count).unwrap_or(0) } else { page.len() };
            items.extend(page);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }
}

/// Items a Query leaves out: those whose string `attribute` is `value`.
struct Except {
    attribute: &'static str,
    value: &'static str,
}

fn backend<E>(operation: &'static str, e: aws_sdk_dynamodb::error::SdkError<E>) -> CatalogError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    CatalogError::Backend { operation, cause: Box::new(aws_failure(&e)) }
}

fn target_pk(target: &str) -> String {
    format!("TARGET#{target}")
}

fn backup_sk(id: &BackupId) -> String {
    format!("BACKUP#{id}")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn string_attr(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn time_attr(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// A record as an item: its serde fields as attributes, plus the keys.
fn to_item<T: Serialize>(value: &T, pk: String, sk: String) -> Item {
    let mut item = match json_to_attr(serde_json::to_value(value).expect("records serialize")) {
        AttributeValue::M(m) => m,
        _ => unreachable!("records serialize to objects"),
    };
    item.insert("pk".into(), AttributeValue::S(pk));
    item.insert("sk".into(), AttributeValue::S(sk));
    item
}

fn from_item<T: DeserializeOwned>(mut item: Item, what: &str) -> Result<T, CatalogError> {
    for key in ["pk", "sk", "expires_at", "kind"] {
        item.remove(key);
    }
    serde_json::from_value(attr_to_json(AttributeValue::M(item)))
        .map_err(|e| CatalogError::Corrupt { what: what.to_string(), message: e.to_string() })
}

/// The items of a list that can be read. One that cannot (edited by hand with a typo, or written by a newer
/// release) is left out with an error in the log naming its key, rather than failing the whole list: that would
/// stop every backup, drill and report of the target (of the fleet, for a backup plan) until it is mended.
fn readable<T: DeserializeOwned>(items: Vec<Item>, what: &str) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|item| {
            let key = item.get("sk").and_then(|sk| sk.as_s().ok()).cloned().unwrap_or_default();
            from_item(item, what)
                .map_err(|e| tracing::error!(sort_key = %key, error = %e, "a catalog item cannot be read: left out; mend or delete it"))
                .ok()
        })
        .collect()
}

fn json_to_attr(value: Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s),
        Value::Array(a) => AttributeValue::L(a.into_iter().map(json_to_attr).collect()),
        Value::Object(o) => AttributeValue::M(o.into_iter().map(|(k, v)| (k, json_to_attr(v))).collect()),
    }
}

fn attr_to_json(attr: AttributeValue) -> Value {
    match attr {
        AttributeValue::S(s) => Value::String(s),
        AttributeValue::N(n) => n
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| n.parse::<i64>().map(Value::from))
            .or_else(|_| n.parse::<f64>().map(Value::from))
            .unwrap_or(Value::String(n)),
        AttributeValue::Bool(b) => Value::Bool(b),
        AttributeValue::L(l) => Value::Array(l.into_iter().map(attr_to_json).collect()),
        AttributeValue::M(m) => Value::Object(m.into_iter().map(|(k, v)| (k, attr_to_json(v))).collect()),
        _ => Value::Null,
    }
}

#[async_trait]
impl Leases for DynamoCatalog {
    async fn acquire_lease(&self, r: &LeaseRequest) -> Result<LeaseOutcome, CatalogError> {
        let sk = format!("LEASE#{}", r.job.as_str());
        let item: Item = [
            ("pk".to_string(), s(&target_pk(&r.target))),
            ("sk".to_string(), s(&sk)),
            ("kind".to_string(), s("lease")),
            ("owner".to_string(), s(&r.owner)),
            ("acquired_at".to_string(), s(&r.now.to_rfc3339())),
            ("expires_at".to_string(), n(r.expires_at.timestamp())),
        ]
        .into_iter()
        .collect();
        let acquired = self
            // Free, expired, or already ours (a renewal).
            .put_if(
                item,
                "attribute_not_exists(pk) OR expires_at < :now OR #owner = :owner",
                &[("#owner", "owner")],
                vec![(":now", n(r.now.timestamp())), (":owner", s(&r.owner))],
            )
            .await?;
        if acquired {
            return Ok(LeaseOutcome::Acquired);
        }
        let held = self.get(target_pk(&r.target), sk).await?.unwrap_or_default();
        Ok(LeaseOutcome::HeldBy {
            owner: string_attr(&held, "owner").unwrap_or_else(|| "(released just now)".into()),
            expires_at: time_attr(&held, "expires_at").unwrap_or(r.now),
        })
    }

    async fn release_lease(&self, target: &str, job: Job, owner: &str) -> Result<(), CatalogError> {
        self.delete_if_owner(target_pk(target), format!("LEASE#{}", job.as_str()), owner).await
    }
}

#[async_trait]
impl Claims for DynamoCatalog {
    async fn claim_idempotency(&self, c: &IdempotencyClaim) -> Result<ClaimOutcome, CatalogError> {
        let (pk, sk) = (format!("EVENT#{}", c.key), target_pk(&c.target));
        let item: Item = [
            ("pk".to_string(), s(&pk)),
            ("sk".to_string(), s(&sk)),
            ("kind".to_string(), s("claim")),
            ("state".to_string(), s("running")),
            ("owner".to_string(), s(&c.owner)),
            ("expires_at".to_string(), n(c.expires_at.timestamp())),
        ]
        .into_iter()
        .collect();
        let condition = "attribute_not_exists(pk) OR (#state = :running AND expires_at < :now)";
        let claimed = self
            .put_if(
                item,
                condition,
                &[("#state", "state")],
                vec![(":running", s("running")), (":now", n(c.now.timestamp()))],
            )
            .await?;
        if claimed {
            return Ok(ClaimOutcome::Claimed);
        }
        let existing = self.get(pk, sk).await?.unwrap_or_default();
        Ok(match (string_attr(&existing, "state").as_deref(), string_attr(&existing, "backup_id")) {
            (Some("done"), Some(id)) => ClaimOutcome::AlreadyDone { backup_id: BackupId(id) },
            _ => ClaimOutcome::InProgress { owner: string_attr(&existing, "owner").unwrap_or_default() },
        })
    }

    async fn settle_idempotency(&self, c: &IdempotencyClaim, settlement: ClaimSettlement) -> Result<(), CatalogError> {
        let (pk, sk) = (format!("EVENT#{}", c.key), target_pk(&c.target));
        match settlement {
            ClaimSettlement::Completed { backup_id, keep_until } => {
                let item: Item = [
                    ("pk".to_string(), s(&pk)),
                    ("sk".to_string(), s(&sk)),
                    ("kind".to_string(), s("claim")),
                    ("state".to_string(), s("done")),
                    ("owner".to_string(), s(&c.owner)),
                    ("backup_id".to_string(), s(backup_id.as_str())),
                    ("expires_at".to_string(), n(keep_until.timestamp())),
                ]
                .into_iter()
                .collect();
                let condition = "#owner = :owner AND #state = :running";
                let names = [("#owner", "owner"), ("#state", "state")];
                if self
                    .put_if(item, condition, &names, vec![(":owner", s(&c.owner)), (":running", s("running"))])
                    .await?
                {
                    Ok(())
                } else {
                    Err(CatalogError::claim_taken_over(c))
                }
            }
            ClaimSettlement::Released => self.delete_if_owner(pk, sk, &c.owner).await,
        }
    }
}

#[async_trait]
impl Backups for DynamoCatalog {
    async fn create_backup(&self, record: &BackupRecord) -> Result<(), CatalogError> {
        let mut item = to_item(record, target_pk(&record.target), backup_sk(&record.backup_id));
        item.insert("kind".into(), s("backup"));
        if self.put_if(item, "attribute_not_exists(pk)", &[], vec![]).await? {
            Ok(())
        } else {
            Err(CatalogError::Conflict { what: format!("backup {}", record.backup_id), expected: "absent".into() })
        }
    }

    async fn update_backup(&self, record: &BackupRecord, expected: BackupStatus) -> Result<(), CatalogError> {
        let mut item = to_item(record, target_pk(&record.target), backup_sk(&record.backup_id));
        item.insert("kind".into(), s("backup"));
        let done = self
            .put_if(item, "#status = :expected", &[("#status", "status")], vec![(":expected", s(expected.as_str()))])
            .await?;
        if done {
            Ok(())
        } else {
            Err(CatalogError::Conflict { what: format!("backup {}", record.backup_id), expected: expected.to_string() })
        }
    }

    async fn get_backup(&self, target: &str, backup_id: &BackupId) -> Result<Option<BackupRecord>, CatalogError> {
        self.get(target_pk(target), backup_sk(backup_id))
            .await?
            .map(|item| from_item(item, &format!("backup {backup_id}")))
            .transpose()
    }

    async fn recent_backups(&self, target: &str, limit: usize) -> Result<Vec<BackupRecord>, CatalogError> {
        self.newest_readable(target_pk(target), "BACKUP#", None, limit, &format!("a backup of {target}")).await
    }

    async fn backups_started_before(
        &self,
        target: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<BackupRecord>, CatalogError> {
        let bound = format!("BACKUP#{}", crate::domain::backup::id_bound_after(before));
        self.newest_readable(target_pk(target), "BACKUP#", Some(&bound), limit, &format!("a backup of {target}")).await
    }
}

#[async_trait]
impl Drills for DynamoCatalog {
    async fn create_drill(&self, drill: &DrillRecord) -> Result<(), CatalogError> {
        let mut item = to_item(drill, target_pk(&drill.target), format!("DRILL#{}", drill.drill_id));
        item.insert("kind".into(), s("drill"));
        if self.put_if(item, "attribute_not_exists(pk)", &[], vec![]).await? {
            Ok(())
        } else {
            Err(CatalogError::Conflict { what: format!("drill {}", drill.drill_id), expected: "absent".into() })
        }
    }

    async fn update_drill(&self, drill: &DrillRecord, expected: DrillPhase) -> Result<(), CatalogError> {
        let mut item = to_item(drill, target_pk(&drill.target), format!("DRILL#{}", drill.drill_id));
        item.insert("kind".into(), s("drill"));
        let done = self
            .put_if(item, "#phase = :expected", &[("#phase", "phase")], vec![(":expected", s(expected.as_str()))])
            .await?;
        if done {
            Ok(())
        } else {
            Err(CatalogError::Conflict { what: format!("drill {}", drill.drill_id), expected: expected.to_string() })
        }
    }

    async fn recent_drills(&self, target: &str, limit: usize) -> Result<Vec<DrillRecord>, CatalogError> {
        self.newest_readable(target_pk(target), "DRILL#", None, limit, &format!("a drill of {target}")).await
    }

    async fn unfinished_drills(&self, target: &str, among_latest: usize) -> Result<Vec<DrillRecord>, CatalogError> {
        let done = Except { attribute: "phase", value: DrillPhase::Done.as_str() };
        self.query_newest(target_pk(target), Some("DRILL#"), among_latest, Some(done))
            .await
            .map(|items| readable(items, &format!("a drill of {target}")))
    }
}

#[async_trait]
impl Runs for DynamoCatalog {
    async fn put_run(&self, run: &RunRecord) -> Result<(), CatalogError> {
        let mut item = to_item(
            run,
            format!("RUN#{}", run.job.as_str()),
            format!("{}#{}", run.started_at.to_rfc3339(), run.run_id),
        );
        item.insert("kind".into(), s("run"));
        item.insert("expires_at".into(), n((run.finished_at + chrono::Duration::days(RUN_RETENTION_DAYS)).timestamp()));
        self.put_if(item, "attribute_not_exists(pk)", &[], vec![]).await?;
        Ok(())
    }
}

#[async_trait]
impl AlertStates for DynamoCatalog {
    async fn alert_states(&self, target: &str) -> Result<Vec<AlertState>, CatalogError> {
        self.query_newest(target_pk(target), Some("ALERT#"), 100, None)
            .await?
            .into_iter()
            .map(|item| from_item(item, &format!("an alert state of {target}")))
            .collect()
    }

    async fn put_alert_state(&self, state: &AlertState) -> Result<(), CatalogError> {
        // One writer per target and hour (the schedule); last write wins.
        let mut item = to_item(state, target_pk(&state.target), format!("ALERT#{}", state.check.as_str()));
        item.insert("kind".into(), s("alert_state"));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl Inventories for DynamoCatalog {
    async fn inventories(&self) -> Result<Vec<ServerInventory>, CatalogError> {
        // One partition holds every server's item: a run reads them all with one Query (an item holds a few
        // thousand databases' names within DynamoDB's 400 KB).
        self.query_newest("INVENTORY".into(), Some("SERVER#"), 10_000, None)
            .await?
            .into_iter()
            .map(|item| from_item(item, "a server inventory"))
            .collect()
    }

    async fn put_inventory(&self, inventory: &ServerInventory) -> Result<bool, CatalogError> {
        let mut item = to_item(inventory, "INVENTORY".into(), format!("SERVER#{}", inventory.server));
        item.insert("kind".into(), s("inventory"));
        // The RFC 3339 text does not compare as time when fractions differ in length: the condition uses millis.
        let millis = inventory.discovered_at.timestamp_millis();
        item.insert("discovered_ms".into(), n(millis));
        self.put_if(item, "attribute_not_exists(pk) OR discovered_ms <= :millis", &[], vec![(":millis", n(millis))])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_attributes_round_trip() {
        let v = serde_json::json!({"a": "x", "b": 3, "c": [true, null, -2, 1.5], "d": {"e": ""}});
        assert_eq!(attr_to_json(json_to_attr(v.clone())), v);
    }
}
