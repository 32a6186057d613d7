//! `pubsub::publish_durable(topic, message)`.

use rhai::plugin::*;
use rhai::Dynamic;

use super::{call, note_skipped, to_json};

#[export_module]
mod pubsub_ns {
    use super::*;

    /// Queues `message` (any JSON-able value; Blobs become base64 at any depth) for
    /// every `pubsub` trigger of this app whose pattern matches `topic`, durably: the
    /// deliveries commit together before this returns. No subscriber: nothing is
    /// queued, and no error. Each subscriber gets the message at least once.
    #[rhai_fn(return_raw)]
    pub fn publish_durable(topic: &str, message: Dynamic) -> Result<(), Box<EvalAltResult>> {
        let json = to_json(
            "pubsub",
            "message",
            &message,
            (
                |s| s.pubsub.max_message_bytes(),
                "PICLOUD_DOCS_MAX_DOC_BYTES",
            ),
        )?;
        let topic = topic.to_owned();
        let published = call("pubsub", |s, ctx| async move {
            s.pubsub.publish_durable(&ctx, &topic, &json).await
        })?;
        note_skipped("pubsub", published.skipped_for_depth);
        Ok(())
    }
}

pub(crate) fn module() -> Module {
    exported_module!(pubsub_ns)
}
