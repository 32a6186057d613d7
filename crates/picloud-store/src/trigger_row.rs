//! Decoding a trigger row by its kind, the same for every backend: each reads the
//! trigger joined to its kind's details table with its own SQL, and hands the columns
//! over through [`TriggerColumns`] (the row mapping, which differs by driver).

use chrono::{DateTime, Utc};
use picloud_core::model::{DocsOp, FilesOp, KvOp, TriggerKind};

use crate::{CronState, StoreResult, TriggerConfig};

/// The detail columns of a trigger row, by name (`kv_collection`, `docs_on_update`,
/// `cron_next_fire_at`, …).
pub trait TriggerColumns {
    fn flag(&self, name: &str) -> StoreResult<bool>;
    fn text(&self, name: &str) -> StoreResult<String>;
    fn time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>>;
}

/// The trigger's configuration and, for a cron trigger, its schedule state.
pub fn trigger_config(
    kind: TriggerKind,
    row: &impl TriggerColumns,
) -> StoreResult<(TriggerConfig, Option<CronState>)> {
    let config = match kind {
        TriggerKind::Kv => TriggerConfig::Kv {
            collection: row.text("kv_collection")?,
            ops: ops(
                row,
                &[("kv_on_set", KvOp::Set), ("kv_on_delete", KvOp::Delete)],
            )?,
        },
        TriggerKind::Docs => TriggerConfig::Docs {
            collection: row.text("docs_collection")?,
            ops: ops(
                row,
                &[
                    ("docs_on_create", DocsOp::Create),
                    ("docs_on_update", DocsOp::Update),
                    ("docs_on_delete", DocsOp::Delete),
                ],
            )?,
        },
        TriggerKind::Files => TriggerConfig::Files {
            collection: row.text("files_collection")?,
            ops: ops(
                row,
                &[
                    ("files_on_create", FilesOp::Create),
                    ("files_on_update", FilesOp::Update),
                    ("files_on_delete", FilesOp::Delete),
                ],
            )?,
        },
        TriggerKind::Pubsub => TriggerConfig::Pubsub {
            topic: row.text("pubsub_topic")?,
        },
        TriggerKind::Cron => TriggerConfig::Cron {
            schedule: row.text("cron_schedule")?,
            timezone: row.text("cron_timezone")?,
        },
        TriggerKind::DeadLetter => TriggerConfig::DeadLetter,
    };
    let cron = match kind {
        TriggerKind::Cron => Some(CronState {
            next_fire_at: row.time("cron_next_fire_at")?,
            last_fired_at: row.time("cron_last_fired_at")?,
        }),
        TriggerKind::Kv
        | TriggerKind::Docs
        | TriggerKind::Files
        | TriggerKind::Pubsub
        | TriggerKind::DeadLetter => None,
    };
    Ok((config, cron))
}

/// The operations whose flag column is set, in the order given.
fn ops<Op: Copy>(row: &impl TriggerColumns, flags: &[(&str, Op)]) -> StoreResult<Vec<Op>> {
    let mut ops = Vec::new();
    for (column, op) in flags {
        if row.flag(column)? {
            ops.push(*op);
        }
    }
    Ok(ops)
}
