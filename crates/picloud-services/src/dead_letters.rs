//! `dead_letters::{list, replay, resolve}`.

use std::sync::Arc;

use picloud_core::access::Capability;
use picloud_core::{DeadLetterId, EventId};
use picloud_store::{DeadLetter, DeadLetterFilter, PageRequest, RetryPolicy, Store};

use crate::{CallContext, ServiceError, ServiceResult};

pub struct DeadLetterService {
    store: Arc<dyn Store>,
    default_retry: RetryPolicy,
}

fn parse_id(id: &str) -> ServiceResult<DeadLetterId> {
    DeadLetterId::parse(id).map_err(|_| ServiceError::NotFound(format!("dead letter {id:?}")))
}

impl DeadLetterService {
    pub fn new(store: Arc<dyn Store>, default_retry: RetryPolicy) -> Self {
        Self {
            store,
            default_retry,
        }
    }

    pub async fn list(
        &self,
        ctx: &CallContext,
        filter: DeadLetterFilter,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<(Vec<DeadLetter>, Option<String>)> {
        ctx.require(Capability::DataRead)?;
        let page =
            PageRequest::parse(cursor, limit).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let page = self
            .store
            .list_dead_letters(&ctx.app_id, filter, &page)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok((page.items, page.next_cursor.map(|c| c.as_str().to_owned())))
    }

    /// Delivers the event again: same event id, attempt 1, the trigger's full policy.
    pub async fn replay(&self, ctx: &CallContext, id: &str) -> ServiceResult<EventId> {
        ctx.require(Capability::DataWrite)?;
        let id = parse_id(id)?;
        let dl = self
            .store
            .get_dead_letter(&ctx.app_id, &id)
            .await
            .map_err(|e| ServiceError::store(e, "dead letter"))?;
        let retry = match &dl.trigger_id {
            Some(trigger) => match self.store.get_trigger(&ctx.app_id, trigger).await {
                Ok(t) => t.retry.unwrap_or(self.default_retry),
                Err(_) => self.default_retry,
            },
            None => self.default_retry,
        };
        let event = self
            .store
            .replay_dead_letter(&ctx.app_id, &id, retry)
            .await
            .map_err(|e| match e {
                picloud_store::StoreError::NotFound => ServiceError::Conflict(
                    "the dead letter's script no longer exists; it cannot be replayed".into(),
                ),
                other => ServiceError::store(other, "dead letter"),
            })?;
        Ok(event)
    }

    pub async fn resolve(&self, ctx: &CallContext, id: &str) -> ServiceResult<DeadLetter> {
        ctx.require(Capability::DataWrite)?;
        let id = parse_id(id)?;
        self.store
            .resolve_dead_letter(&ctx.app_id, &id)
            .await
            .map_err(|e| ServiceError::store(e, "dead letter"))
    }
}
