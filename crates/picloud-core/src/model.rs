//! The small closed vocabularies of the domain. Each enum has one string form, used
//! on the wire (serde), in the database and in error messages alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A string that is not one of an enum's names.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{value:?} is not one of: {expected}")]
pub struct UnknownVariant {
    pub value: String,
    pub expected: &'static str,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        // Written out by hand: the derive does not see a `serde(rename)` whose text
        // arrives through a macro fragment, and would publish the Rust variant names
        // (`Sync`) instead of the wire values (`sync`).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl ToSchema for $name {}

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// Endpoints answer routes and triggers; modules are libraries other scripts import.
    ScriptKind { Endpoint = "endpoint", Module = "module" }
);

string_enum!(
    /// The method a route answers; `ANY` answers every method.
    RouteMethod {
        Get = "GET",
        Post = "POST",
        Put = "PUT",
        Patch = "PATCH",
        Delete = "DELETE",
        Head = "HEAD",
        Options = "OPTIONS",
        Any = "ANY",
    }
);

impl RouteMethod {
    /// The route method for a request method; `None` for methods routes cannot name
    /// (a request with such a method can still reach an `ANY` route).
    pub fn from_request(method: &str) -> Option<RouteMethod> {
        match method {
            "ANY" => None,
            other => other.parse().ok(),
        }
    }
}

string_enum!(
    /// Sync routes run the script while the client waits; async routes answer 202 and
    /// run it through the outbox.
    DispatchMode { Sync = "sync", Async = "async" }
);

string_enum!(
    /// Whether a route demands a token holding `script:invoke` on the app.
    RouteAuth { Public = "public", Required = "required" }
);

string_enum!(
    /// How a run ended.
    ExecutionStatus {
        Ok = "ok",
        Error = "error",
        Timeout = "timeout",
        LimitExceeded = "limit_exceeded",
    }
);

string_enum!(
    /// What started a run: an HTTP route or one of the event sources.
    ExecutionSource {
        Http = "http",
        Kv = "kv",
        Docs = "docs",
        Files = "files",
        Pubsub = "pubsub",
        Cron = "cron",
        DeadLetter = "dead_letter",
        Email = "email",
    }
);

string_enum!(
    /// Level of a line a script logged.
    LogLevel { Trace = "trace", Info = "info", Warn = "warn", Error = "error" }
);

string_enum!(
    /// What a trigger listens to. Adding a kind: a variant here, a detail table, an
    /// event shape and a matcher.
    TriggerKind {
        Kv = "kv",
        Docs = "docs",
        Files = "files",
        Pubsub = "pubsub",
        Cron = "cron",
        DeadLetter = "dead_letter",
    }
);

impl TriggerKind {
    /// The event source its runs report (`ctx.event.source`, execution `source`).
    pub fn source(self) -> ExecutionSource {
        match self {
            TriggerKind::Kv => ExecutionSource::Kv,
            TriggerKind::Docs => ExecutionSource::Docs,
            TriggerKind::Files => ExecutionSource::Files,
            TriggerKind::Pubsub => ExecutionSource::Pubsub,
            TriggerKind::Cron => ExecutionSource::Cron,
            TriggerKind::DeadLetter => ExecutionSource::DeadLetter,
        }
    }
}

string_enum!(
    /// A change to a KV entry.
    KvOp { Set = "set", Delete = "delete" }
);

string_enum!(
    /// A change to a document.
    DocsOp { Create = "create", Update = "update", Delete = "delete" }
);

string_enum!(
    /// A change to a stored file.
    FilesOp { Create = "create", Update = "update", Delete = "delete" }
);

string_enum!(
    /// What became of a dead letter; `None` while it is open.
    Resolution {
        Resolved = "resolved",
        Replayed = "replayed",
        HandlerFailed = "handler_failed",
    }
);

/// Rules for an app slug: `^[a-z][a-z0-9-]{1,62}$`.
pub fn validate_slug(slug: &str) -> Result<(), &'static str> {
    let bytes = slug.as_bytes();
    if !(2..=63).contains(&bytes.len()) {
        return Err("slug must be 2 to 63 characters long");
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err("slug must start with a lower-case letter");
    }
    if !bytes[1..]
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err("slug may contain only lower-case letters, digits and '-'");
    }
    Ok(())
}

/// How deep imports may nest: an endpoint importing a module importing a module … .
pub const MAX_IMPORT_DEPTH: usize = 8;

/// Module names may not shadow a namespace of the SDK.
pub const RESERVED_MODULE_NAMES: &[&str] = &[
    "log",
    "regex",
    "random",
    "time",
    "json",
    "base64",
    "hex",
    "url",
    "kv",
    "docs",
    "dead_letters",
    "http",
    "files",
    "pubsub",
    "secrets",
    "email",
    "users",
    "queue",
];

/// Rules for a module name: `^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`, and not an SDK namespace.
pub fn validate_module_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let shaped = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shaped {
        return Err("a module name must match ^[a-zA-Z_][a-zA-Z0-9_]{0,63}$".into());
    }
    if RESERVED_MODULE_NAMES.contains(&name) {
        return Err(format!("{name:?} is the name of an SDK namespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_names() {
        for method in RouteMethod::ALL {
            assert_eq!(method.as_str().parse::<RouteMethod>().ok(), Some(*method));
        }
        assert!("get".parse::<RouteMethod>().is_err());
        assert_eq!(
            serde_json::to_string(&ExecutionStatus::LimitExceeded)
                .ok()
                .as_deref(),
            Some("\"limit_exceeded\"")
        );
    }

    #[test]
    fn slugs() {
        assert!(validate_slug("shop").is_ok());
        assert!(validate_slug("a1-b").is_ok());
        assert!(validate_slug("a").is_err());
        assert!(validate_slug("1shop").is_err());
        assert!(validate_slug("Shop").is_err());
        assert!(validate_slug("sh_op").is_err());
        assert!(validate_slug(&"a".repeat(64)).is_err());
        assert!(validate_slug(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn module_names() {
        for ok in ["math", "_x", "A1_b", &"m".repeat(64)] {
            assert!(super::validate_module_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "a-b",
            "a.b",
            "kv",
            "http",
            "dead_letters",
            &"m".repeat(65),
        ] {
            assert!(super::validate_module_name(bad).is_err(), "{bad}");
        }
    }
}
