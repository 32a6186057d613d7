//! Placeholder: the PostgreSQL events store is being written.
#![allow(unused_variables)]

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{AppId, DeadLetterId, EventId, TriggerId};
use picloud_store::*;
use serde_json::Value;

use crate::PostgresStore;

#[async_trait]
impl KvStore for PostgresStore {
    async fn kv_get(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<KvEntry>> {
        todo!()
    }
    async fn kv_set(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        value: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        todo!()
    }
    async fn kv_delete(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        todo!()
    }
    async fn kv_list(
        &self,
        app: &AppId,
        collection: &str,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<KvEntry>> {
        todo!()
    }
}
#[async_trait]
impl TriggerStore for PostgresStore {
    async fn create_trigger(&self, new: NewTrigger) -> StoreResult<Trigger> {
        todo!()
    }
    async fn get_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<Trigger> {
        todo!()
    }
    async fn list_triggers(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Trigger>> {
        todo!()
    }
    async fn set_trigger_enabled(
        &self,
        app: &AppId,
        id: &TriggerId,
        enabled: bool,
    ) -> StoreResult<Trigger> {
        todo!()
    }
    async fn delete_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<()> {
        todo!()
    }
}
#[async_trait]
impl EventStore for PostgresStore {
    async fn enqueue_event(&self, new: NewEvent) -> StoreResult<()> {
        todo!()
    }
    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<OutboxEvent>> {
        todo!()
    }
    async fn extend_lease(
        &self,
        id: &EventId,
        version: i64,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        todo!()
    }
    async fn complete_event(&self, id: &EventId, version: i64) -> StoreResult<bool> {
        todo!()
    }
    async fn retry_event(
        &self,
        id: &EventId,
        version: i64,
        attempt: u32,
        due_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        todo!()
    }
    async fn dead_letter_event(
        &self,
        id: &EventId,
        version: i64,
        error: &str,
        max_depth: u32,
    ) -> StoreResult<Option<DeadLetter>> {
        todo!()
    }
    async fn fail_dead_letter_handler(
        &self,
        id: &EventId,
        version: i64,
        dead_letter: &DeadLetterId,
    ) -> StoreResult<bool> {
        todo!()
    }
    async fn release_claims(&self) -> StoreResult<u64> {
        todo!()
    }
    async fn next_event_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        todo!()
    }
    async fn count_events(&self, app: &AppId) -> StoreResult<u64> {
        todo!()
    }
}
#[async_trait]
impl DeadLetterStore for PostgresStore {
    async fn list_dead_letters(
        &self,
        app: &AppId,
        filter: DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        todo!()
    }
    async fn get_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        todo!()
    }
    async fn resolve_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        todo!()
    }
    async fn replay_dead_letter(
        &self,
        app: &AppId,
        id: &DeadLetterId,
        retry: RetryPolicy,
    ) -> StoreResult<EventId> {
        todo!()
    }
    async fn delete_dead_letters_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        todo!()
    }
}
#[async_trait]
impl AbandonedStore for PostgresStore {
    async fn record_abandoned(&self, entry: &Abandoned) -> StoreResult<()> {
        todo!()
    }
    async fn list_abandoned(
        &self,
        app: &AppId,
        page: &PageRequest,
    ) -> StoreResult<Page<Abandoned>> {
        todo!()
    }
    async fn delete_abandoned_before(&self, cutoff: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        todo!()
    }
}
