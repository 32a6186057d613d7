//! Durable publish: one outbox row per subscriber trigger whose pattern matches the
//! topic, written in the publish's transaction. Topic and pattern rules live here,
//! once, for every backend and for the admin API.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::AppId;
use serde_json::{json, Value};

use crate::{EventCause, StoreResult, WriteOutcome};

/// The longest topic (and pattern), in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Why a topic or pattern is refused, in user terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

/// Checks a topic a message is published to: 1 to 256 bytes, no whitespace or
/// control characters, no `*` (wildcards belong to subscriptions).
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError("a topic cannot be empty".into()));
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicError(format!(
            "a topic is at most {MAX_TOPIC_BYTES} bytes; this one is {}",
            topic.len()
        )));
    }
    if topic
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || invisible(c))
    {
        return Err(TopicError(
            "a topic cannot hold whitespace, control or invisible characters".into(),
        ));
    }
    if topic.contains('*') {
        return Err(TopicError(
            "a topic cannot hold `*`: wildcards belong to subscriptions".into(),
        ));
    }
    Ok(())
}

/// Characters that render as nothing (zero-width, bidirectional controls, the BOM):
/// two topics that look the same must be the same.
fn invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// What a `pubsub` trigger listens to (SCRIPTING.md): one topic, every topic under
/// a prefix (`orders.*`: `orders.new`, `orders.eu.new`, not `orders`), or all (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    Exact(String),
    /// The prefix with its trailing dot (`orders.`).
    Prefix(String),
    All,
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<TopicPattern, TopicError> {
        if pattern == "*" {
            return Ok(TopicPattern::All);
        }
        if let Some(prefix) = pattern.strip_suffix(".*") {
            validate_topic(prefix).map_err(|_| mid_wildcard(pattern))?;
            // A pattern that no topic (at most 256 bytes) could match is a mistake.
            if prefix.len() + 2 > MAX_TOPIC_BYTES {
                return Err(TopicError(format!(
                    "a pattern's prefix is at most {} bytes: longer, no topic could match it",
                    MAX_TOPIC_BYTES - 2
                )));
            }
            return Ok(TopicPattern::Prefix(format!("{prefix}.")));
        }
        if pattern.contains('*') {
            return Err(mid_wildcard(pattern));
        }
        validate_topic(pattern)?;
        Ok(TopicPattern::Exact(pattern.to_owned()))
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(p) => topic.len() > p.len() && topic.starts_with(p.as_str()),
            TopicPattern::All => true,
        }
    }
}

/// Whether a stored trigger pattern matches `topic`; a pattern that no longer parses
/// (stored before a rule tightened) matches nothing rather than failing the publish.
pub fn matches_stored(pattern: &str, topic: &str) -> bool {
    TopicPattern::parse(pattern).is_ok_and(|p| p.matches(topic))
}

fn mid_wildcard(pattern: &str) -> TopicError {
    if pattern.len() > MAX_TOPIC_BYTES || pattern.chars().any(|c| c.is_whitespace()) {
        return TopicError(format!(
            "a pattern is at most {MAX_TOPIC_BYTES} bytes with no whitespace"
        ));
    }
    TopicError(
        "a pattern is an exact topic, `prefix.*` or `*`: a wildcard may only be the whole \
         pattern or its last segment"
            .into(),
    )
}

/// The event a durable publish emits (SCRIPTING.md "Events").
pub fn pubsub_event(topic: &str, message: &Value, published_at: DateTime<Utc>) -> Value {
    json!({
        "source": "pubsub",
        "op": "publish",
        "pubsub": {"topic": topic, "message": message, "published_at": published_at},
    })
}

#[async_trait]
pub trait PubsubStore {
    /// Queues one delivery of the message to every enabled `pubsub` trigger of the app
    /// whose pattern matches `topic`, in one transaction; none match → nothing
    /// written, and success.
    async fn publish_durable(
        &self,
        app: &AppId,
        topic: &str,
        message: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let p = TopicPattern::parse("orders.*").expect("valid");
        assert!(p.matches("orders.new"));
        assert!(p.matches("orders.eu.new"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders."));
        assert!(!p.matches("ordersx.new"));
        assert!(TopicPattern::parse("*").expect("valid").matches("anything"));
        let exact = TopicPattern::parse("orders").expect("valid");
        assert!(exact.matches("orders") && !exact.matches("orders.new"));
    }

    #[test]
    fn wildcards_in_the_middle_are_refused() {
        for bad in [
            "orders.*.new",
            "*.new",
            "or*ders",
            "orders*",
            "**",
            "orders.**",
            ".*",
        ] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(TopicPattern::parse("").is_err());
        assert!(TopicPattern::parse("a b").is_err());
        assert!(TopicPattern::parse(&"x".repeat(300)).is_err());
    }

    #[test]
    fn topics_refuse_wildcards_and_blanks() {
        assert!(validate_topic("orders.new").is_ok());
        assert!(validate_topic("user:42/inbox").is_ok());
        assert!(validate_topic("orders.*").is_err());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a\nb").is_err());
        assert!(validate_topic("a\u{200B}b").is_err());
        assert!(TopicPattern::parse(&format!("{}.*", "a".repeat(256))).is_err());
        assert!(TopicPattern::parse(&format!("{}.*", "a".repeat(254))).is_ok());
    }
}
