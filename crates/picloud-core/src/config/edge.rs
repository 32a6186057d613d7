//! What the server believes about the network in front of it (trusted proxies) and
//! who may read its metrics.

use std::fmt;
use std::net::SocketAddr;

use super::{ConfigError, Source};
use crate::net::IpNet;

/// The shortest metrics token accepted: anything shorter is guessable online.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

/// Access to `/metrics`: with the token on the main listener, or on a listener of its
/// own (meant for an address only the scraper reaches). Neither: 401 for everyone.
#[derive(Clone, Default)]
pub struct MetricsConfig {
    pub token: Option<String>,
    pub listen: Option<SocketAddr>,
}

impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("listen", &self.listen)
            .finish()
    }
}

pub(super) fn load(src: &Source<'_>) -> Result<(Vec<IpNet>, MetricsConfig), ConfigError> {
    let trusted_proxies = src.parse("PICLOUD_TRUSTED_PROXIES", Vec::new(), |s| {
        s.split(',')
            .map(|part| part.trim().parse::<IpNet>().map_err(|e| e.to_string()))
            .collect()
    })?;
    let token = src.parse("PICLOUD_METRICS_TOKEN", None, |s| {
        if s.len() < MIN_METRICS_TOKEN_LEN {
            return Err(format!(
                "must be at least {MIN_METRICS_TOKEN_LEN} characters (e.g. `openssl rand -hex 24`)"
            ));
        }
        // It travels in a header: visible ASCII only.
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(Some(s.to_owned()))
    })?;
    let listen = src.parse("PICLOUD_METRICS_LISTEN", None, |s| {
        s.parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| format!("invalid value {s:?}: expected host:port, like 127.0.0.1:9090"))
    })?;
    Ok((trusted_proxies, MetricsConfig { token, listen }))
}
