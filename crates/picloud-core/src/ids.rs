//! Typed, prefixed identifiers.
//!
//! Every id is `{prefix}_{26 chars}`: a 48-bit millisecond timestamp followed by 80
//! random bits, in lower-case Crockford base32. They sort by creation time, which is
//! what keyset pagination orders by, and the prefix means an id can never be mistaken
//! for a slug or for an id of another kind.

use std::fmt;
use std::sync::Mutex;

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// The last id body handed out, so ids made in the same millisecond still sort in
/// creation order within this process (the random part is incremented instead of
/// redrawn, as monotonic ULID generators do).
static LAST: Mutex<u128> = Mutex::new(0);

fn new_value() -> u128 {
    let millis = u128::try_from(chrono::Utc::now().timestamp_millis().max(0)).unwrap_or(0);
    let mut value = body_value(millis);
    {
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if value <= *last {
            value = last.wrapping_add(1);
        }
        *last = value;
    }
    value
}

/// 48 bits of milliseconds, then 80 random bits.
fn body_value(millis: u128) -> u128 {
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let mut value = (millis & ((1 << 48) - 1)) << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    value
}

/// `{prefix}_{body}`, built in one allocation (ids are minted on every request).
fn id_string(prefix: &str, mut value: u128) -> String {
    let mut body = [0u8; BODY_LEN];
    for slot in body.iter_mut().rev() {
        *slot = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    let mut out = String::with_capacity(prefix.len() + 1 + BODY_LEN);
    out.push_str(prefix);
    out.push('_');
    out.extend(body.iter().map(|&b| char::from(b)));
    out
}

fn millis_of(time: chrono::DateTime<chrono::Utc>) -> u128 {
    u128::try_from(time.timestamp_millis().max(0)).unwrap_or(0)
}

fn valid_body(body: &str) -> bool {
    body.len() == BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b))
}

/// An id string did not have the expected prefix or shape.
#[derive(Debug, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    pub kind: &'static str,
}

macro_rules! define_id {
    ($name:ident, $prefix:literal, $kind:literal) => {
        #[doc = concat!("Identifier of a ", $kind, " (`", $prefix, "_…`).")]
        #[derive(
            Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(id_string($prefix, new_value()))
            }

            /// An id minted at `time` (for records made with a known start time).
            pub fn at(time: chrono::DateTime<chrono::Utc>) -> Self {
                Self(id_string($prefix, body_value(millis_of(time))))
            }

            /// The smallest id of this kind minted at `time`: every id minted earlier
            /// sorts below it, so ids double as a time index.
            pub fn lower_bound(time: chrono::DateTime<chrono::Utc>) -> String {
                id_string($prefix, (millis_of(time) & ((1 << 48) - 1)) << 80)
            }

            /// Parses an id received from outside; rejects other kinds and garbage.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                match s.strip_prefix(concat!($prefix, "_")) {
                    Some(body) if valid_body(body) => Ok(Self(s.to_owned())),
                    _ => Err(InvalidId { kind: $kind }),
                }
            }

            /// Wraps a value read back from our own storage.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some(concat!("A ", $kind, " id, `", $prefix, "_…`")))
                    .examples([concat!($prefix, "_01jd6x0k3m8q2w5e7r9t1y3u5i")])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

define_id!(AppId, "app", "app");
define_id!(ScriptId, "scr", "script");
define_id!(RouteId, "rte", "route");
define_id!(ExecutionId, "exe", "execution");
define_id!(UserId, "usr", "user");
define_id!(SessionId, "ses", "session");
define_id!(EventId, "evt", "event");
define_id!(ApiKeyId, "key", "API key");
define_id!(AuditId, "aud", "audit entry");
define_id!(TriggerId, "trg", "trigger");
define_id!(DeadLetterId, "dlq", "dead letter");
define_id!(AbandonedId, "abn", "abandoned execution");
define_id!(DocId, "doc", "document");
define_id!(FileId, "fil", "file");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_roundtrip_and_reject_other_kinds() {
        let id = AppId::new();
        assert!(id.as_str().starts_with("app_"));
        assert_eq!(id.as_str().len(), 4 + BODY_LEN);
        assert_eq!(AppId::parse(id.as_str()).ok(), Some(id.clone()));
        assert!(ScriptId::parse(id.as_str()).is_err());
        assert!(AppId::parse("shop").is_err());
        assert!(AppId::parse("app_UPPERCASEISNOTALLOWED0000").is_err());
    }

    #[test]
    fn ids_double_as_a_time_index() {
        let t = chrono::Utc::now() - chrono::Duration::days(3);
        let before = ExecutionId::at(t - chrono::Duration::milliseconds(1));
        let bound = ExecutionId::lower_bound(t);
        let at = ExecutionId::at(t);
        assert!(before.as_str() < bound.as_str());
        assert!(bound.as_str() <= at.as_str());
        assert!(at < ExecutionId::new());
        assert!(ExecutionId::parse(&bound).is_ok());
    }

    #[test]
    fn ids_sort_by_creation_time_even_within_a_millisecond() {
        let ids: Vec<ScriptId> = (0..1000).map(|_| ScriptId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
