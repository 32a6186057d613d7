//! Outbound email (`email::send`): the SMTP relay, its TLS, the pool and the limits.
//!
//! API.md: without HOST, USER and PASSWORD all set, email runs in disabled mode (every
//! send throws `email: not configured`, and start-up warns). A partial set is not an
//! error, only a louder warning naming what is missing: an instance without email is a
//! valid instance.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Source};

/// Largest message by default, headers and encoded bodies included: 10 MiB, which
/// common relays accept (many cap at 10–25 MB) and which a script can build within its
/// own limits.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 10 << 20;
/// Recipients (to + cc + bcc) of one message by default.
pub const DEFAULT_MAX_RECIPIENTS: usize = 50;
/// How long a pooled connection may sit idle. Servers drop idle clients after their own
/// timeout (RFC 5321 suggests 5 minutes; hosted relays often use far less), and reusing
/// a connection the server already closed costs a failed probe: staying well below is
/// cheaper than finding out.
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(30);

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text throughout (a relay on the same host or a trusted network only).
    None,
    /// Plain connect, then STARTTLS, required: a server not offering it is an error,
    /// never a silent downgrade.
    StartTls,
    /// TLS from the first byte (implicit TLS, usually port 465).
    Tls,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }
}

/// The relay and its credentials; present only when HOST, USER and PASSWORD all are.
#[derive(Clone)]
pub struct SmtpRelay {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `None`: disabled mode.
    pub relay: Option<SmtpRelay>,
    /// The variables of a partial set-up that are missing (for the start-up warning);
    /// empty when nothing at all is configured or everything is.
    pub missing: Vec<&'static str>,
    pub tls: SmtpTls,
    /// A PEM file of extra root certificates (a private CA), trusted next to the
    /// built-in web roots.
    pub tls_ca_file: Option<PathBuf>,
    /// The whole of one send: connecting, TLS, AUTH and the transfer. lettre's own
    /// timeout covers connecting only, so the service wraps every send in this.
    pub timeout: Duration,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub pool_max_size: u32,
    pub pool_idle: Duration,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            relay: None,
            missing: Vec::new(),
            tls: SmtpTls::StartTls,
            tls_ca_file: None,
            timeout: Duration::from_secs(30),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            pool_max_size: 10,
            pool_idle: DEFAULT_POOL_IDLE,
        }
    }
}

pub(super) fn load(src: &Source<'_>) -> Result<EmailConfig, ConfigError> {
    let d = EmailConfig::default();
    let host = src.parse("PICLOUD_SMTP_HOST", None, |s| {
        // It becomes the TLS server name and goes into no header, but a space or a
        // control character is always a typo.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) || s.contains('/') {
            return Err(format!(
                "invalid value {s:?}: expected a host name or IP address, like smtp.example.com"
            ));
        }
        Ok(Some(s.to_owned()))
    })?;
    let port = src.bounded("PICLOUD_SMTP_PORT", 587u16, 1, u16::MAX)?;
    let user = src.raw("PICLOUD_SMTP_USER").map(|s| s.trim().to_owned());
    // Kept as given: a password may begin or end with a space.
    let password = src.raw("PICLOUD_SMTP_PASSWORD");
    let tls = src.parse("PICLOUD_SMTP_TLS", d.tls, |s| {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err(format!(
                "invalid value {s:?}: expected none, starttls or tls"
            )),
        }
    })?;
    let tls_ca_file = src.parse("PICLOUD_SMTP_TLS_CA_FILE", None, |s| {
        let path = PathBuf::from(s);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        Ok(Some(path))
    })?;
    let timeout =
        Duration::from_secs(src.number("PICLOUD_SMTP_TIMEOUT_SECS", d.timeout.as_secs(), 1)?);
    let max_message_bytes =
        src.number("PICLOUD_EMAIL_MAX_MESSAGE_BYTES", d.max_message_bytes, 1024)?;
    let max_recipients = src.number("PICLOUD_EMAIL_MAX_RECIPIENTS", d.max_recipients, 1)?;
    let pool_max_size = src.bounded("PICLOUD_SMTP_POOL_MAX_SIZE", d.pool_max_size, 1, 1_000)?;
    let pool_idle =
        Duration::from_secs(src.number("PICLOUD_SMTP_POOL_IDLE_SECS", d.pool_idle.as_secs(), 1)?);

    let given = [
        ("PICLOUD_SMTP_HOST", host.is_some()),
        ("PICLOUD_SMTP_USER", user.is_some()),
        ("PICLOUD_SMTP_PASSWORD", password.is_some()),
    ];
    let (relay, missing) = match (host, user, password) {
        (Some(host), Some(user), Some(password)) => (
            Some(SmtpRelay {
                host,
                port,
                user,
                password,
            }),
            Vec::new(),
        ),
        _ if given.iter().all(|(_, set)| !set) => (None, Vec::new()),
        _ => (
            None,
            given
                .iter()
                .filter(|(_, set)| !set)
                .map(|(var, _)| *var)
                .collect(),
        ),
    };
    Ok(EmailConfig {
        relay,
        missing,
        tls,
        tls_ca_file,
        timeout,
        max_message_bytes,
        max_recipients,
        pool_max_size,
        pool_idle,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load(&|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_contract_and_disabled() {
        let c = load(&[]).expect("defaults").email;
        assert!(c.relay.is_none());
        assert!(c.missing.is_empty());
        assert_eq!(c.tls, SmtpTls::StartTls);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.max_message_bytes, 10 << 20);
    }

    #[test]
    fn a_full_set_configures_the_relay_and_never_shows_the_password() {
        let c = load(&[
            ("PICLOUD_SMTP_HOST", "smtp.example.com"),
            ("PICLOUD_SMTP_USER", "mailer"),
            ("PICLOUD_SMTP_PASSWORD", "hunter2-very-secret"),
            ("PICLOUD_SMTP_PORT", "465"),
            ("PICLOUD_SMTP_TLS", "tls"),
            ("PICLOUD_SMTP_TIMEOUT_SECS", "5"),
        ])
        .expect("config");
        let relay = c.email.relay.as_ref().expect("relay");
        assert_eq!(relay.port, 465);
        assert_eq!(c.email.tls, SmtpTls::Tls);
        assert_eq!(c.email.timeout, Duration::from_secs(5));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("smtp.example.com"));
    }

    #[test]
    fn a_partial_set_is_disabled_and_names_what_is_missing() {
        let c = load(&[("PICLOUD_SMTP_HOST", "smtp.example.com")]).expect("config");
        assert!(c.email.relay.is_none());
        assert_eq!(
            c.email.missing,
            vec!["PICLOUD_SMTP_USER", "PICLOUD_SMTP_PASSWORD"]
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, bad) in [
            ("PICLOUD_SMTP_PORT", "0"),
            ("PICLOUD_SMTP_PORT", "70000"),
            ("PICLOUD_SMTP_TLS", "ssl"),
            ("PICLOUD_SMTP_TIMEOUT_SECS", "0"),
            ("PICLOUD_SMTP_HOST", "smtp example.com"),
            ("PICLOUD_SMTP_TLS_CA_FILE", "/nonexistent/ca.pem"),
            ("PICLOUD_EMAIL_MAX_MESSAGE_BYTES", "ten"),
            ("PICLOUD_EMAIL_MAX_RECIPIENTS", "0"),
            ("PICLOUD_SMTP_POOL_MAX_SIZE", "0"),
            ("PICLOUD_SMTP_POOL_IDLE_SECS", "-1"),
        ] {
            let e = load(&[(var, bad)]).expect_err(bad);
            assert_eq!(e.var, var);
            assert!(!e.to_string().contains('\n'));
        }
    }
}
