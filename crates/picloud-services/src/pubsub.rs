//! `pubsub::publish_durable(topic, message)`: one delivery per matching subscriber
//! trigger, in the publish's transaction.

use std::sync::Arc;

use picloud_core::access::Capability;
use picloud_core::config::EventsConfig;
use picloud_store::{validate_topic, EventCause, RetryPolicy, Store};
use serde_json::Value;

use crate::{default_retry, CallContext, ServiceError, ServiceResult};

pub struct PubsubService {
    store: Arc<dyn Store>,
    /// Messages are stored in the outbox like documents, and capped alike
    /// (`PICLOUD_DOCS_MAX_DOC_BYTES`).
    max_message_bytes: usize,
    max_depth: u32,
    default_retry: RetryPolicy,
}

/// What a durable publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Deliveries queued, one per matching enabled subscriber.
    pub deliveries: usize,
    /// Matching subscribers skipped at the depth limit (to be logged by the caller).
    pub skipped_for_depth: usize,
}

impl PubsubService {
    pub fn new(store: Arc<dyn Store>, config: &EventsConfig) -> Self {
        Self {
            store,
            max_message_bytes: config.docs_max_doc_bytes,
            max_depth: config.max_trigger_depth,
            default_retry: default_retry(config),
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    pub async fn publish_durable(
        &self,
        ctx: &CallContext,
        topic: &str,
        message: &Value,
    ) -> ServiceResult<Published> {
        ctx.require(Capability::DataWrite)?;
        validate_topic(topic).map_err(|e| ServiceError::Invalid(e.0))?;
        let size = crate::json_len(message);
        if size > self.max_message_bytes {
            return Err(ServiceError::Invalid(format!(
                "the message is {size} bytes as JSON; the limit is {} \
                 (PICLOUD_DOCS_MAX_DOC_BYTES)",
                self.max_message_bytes
            )));
        }
        let cause = EventCause {
            depth: ctx.depth,
            max_depth: self.max_depth,
            default_retry: self.default_retry,
        };
        let outcome = self
            .store
            .publish_durable(&ctx.app_id, topic, message, &cause)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(Published {
            deliveries: outcome.events.len(),
            skipped_for_depth: outcome.skipped_for_depth,
        })
    }
}
