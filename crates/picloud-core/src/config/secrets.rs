//! Secrets: the value cap and the master key a rotation moves to.
//! `PICLOUD_SECRET_KEY` itself stays on `Config` (it also keys CSRF tokens).

use std::fmt;

use super::{ConfigError, Source};
use crate::crypto::SecretKey;

/// Largest secret value by default, as JSON: 64 KiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 10;

#[derive(Clone)]
pub struct SecretsConfig {
    /// `PICLOUD_SECRET_MAX_VALUE_BYTES`.
    pub max_value_bytes: usize,
    /// `PICLOUD_NEW_SECRET_KEY`: set while the master key is rotated. A server holding
    /// it reads data keys wrapped by either key and wraps new ones under both, so a
    /// rotation never needs a server that cannot read what it finds.
    pub new_key: Option<SecretKey>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            new_key: None,
        }
    }
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("max_value_bytes", &self.max_value_bytes)
            .field("new_key", &self.new_key)
            .finish()
    }
}

pub(super) fn load(src: &Source<'_>) -> Result<SecretsConfig, ConfigError> {
    let d = SecretsConfig::default();
    let max_value_bytes = src.number("PICLOUD_SECRET_MAX_VALUE_BYTES", d.max_value_bytes, 1)?;
    let new_key = src.parse("PICLOUD_NEW_SECRET_KEY", None, |s| {
        SecretKey::parse(s).map(Some).map_err(|e| e.to_string())
    })?;
    Ok(SecretsConfig {
        max_value_bytes,
        new_key,
    })
}
