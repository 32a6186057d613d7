//! `email::*`: outbound mail through the operator's SMTP relay (lettre over rustls).
//!
//! One pooled transport for the process: a pooled connection is probed (NOOP) before
//! reuse and closed after `PICLOUD_SMTP_POOL_IDLE_SECS`, kept below the relays' own idle
//! timeouts. lettre's timeout covers connecting only; a relay that accepts and then
//! never answers would hold a script for its whole run, so every send is wrapped in
//! `PICLOUD_SMTP_TIMEOUT_SECS` as a whole.
//!
//! Errors shown to scripts never carry the relay's own words (its banner, its rejection
//! text may name internal hosts or accounts) nor the credentials: a category and the
//! SMTP code only. The full error goes to the server log.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::{Mailbox, MessageBuilder, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use picloud_core::access::Capability;
use picloud_core::config::{EmailConfig, SmtpTls};

use crate::{CallContext, ServiceError, ServiceResult};

/// The message scripts see in disabled mode (SCRIPTING.md).
pub const NOT_CONFIGURED: &str = "not configured";

/// One message as the script asked for it, before validation.
#[derive(Debug, Clone, Default)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// `None`: replies go to `from`.
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// Why the relay could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("PICLOUD_SMTP_TLS_CA_FILE: cannot read {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("PICLOUD_SMTP_TLS_CA_FILE: {path} holds no usable PEM certificate")]
    CaPem { path: String },
    #[error("PICLOUD_SMTP_TLS: cannot set up TLS for {host}: {message}")]
    Tls { host: String, message: String },
}

struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

pub struct EmailService {
    /// `None`: disabled mode.
    relay: Option<Relay>,
    max_message_bytes: usize,
    max_recipients: usize,
}

impl EmailService {
    /// Every send throws `not configured`.
    pub fn disabled() -> Self {
        let d = EmailConfig::default();
        Self {
            relay: None,
            max_message_bytes: d.max_message_bytes,
            max_recipients: d.max_recipients,
        }
    }

    /// The relay `config` names, or disabled mode (with one warning) without one.
    /// Builds the pool, which starts its idle reaper: call inside a tokio runtime.
    pub fn new(config: &EmailConfig) -> Result<Self, EmailSetupError> {
        let Some(relay) = &config.relay else {
            if config.missing.is_empty() {
                tracing::warn!(
                    "email is disabled: set PICLOUD_SMTP_HOST, PICLOUD_SMTP_USER and \
                     PICLOUD_SMTP_PASSWORD to send; email::send throws \"email: not configured\""
                );
            } else {
                tracing::warn!(
                    missing = %config.missing.join(", "),
                    "email is disabled: the SMTP settings are incomplete; \
                     email::send throws \"email: not configured\""
                );
            }
            return Ok(Self {
                relay: None,
                ..Self::limits(config)
            });
        };
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls_parameters(&relay.host, config)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(&relay.host, config)?),
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&relay.host)
            .port(relay.port)
            .tls(tls)
            .credentials(Credentials::new(relay.user.clone(), relay.password.clone()))
            .timeout(Some(config.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(config.pool_max_size)
                    .idle_timeout(config.pool_idle),
            )
            .build();
        tracing::info!(
            host = %relay.host,
            port = relay.port,
            tls = config.tls.as_str(),
            "email: sending through the SMTP relay"
        );
        Ok(Self {
            relay: Some(Relay {
                transport,
                timeout: config.timeout,
            }),
            ..Self::limits(config)
        })
    }

    fn limits(config: &EmailConfig) -> Self {
        Self {
            relay: None,
            max_message_bytes: config.max_message_bytes,
            max_recipients: config.max_recipients,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.relay.is_some()
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Validates and sends one message; returns once the relay accepted it.
    #[tracing::instrument(skip_all, fields(app = %ctx.app_id))]
    pub async fn send(&self, ctx: &CallContext, email: OutgoingEmail) -> ServiceResult<()> {
        ctx.require(Capability::EmailSend)?;
        let Some(relay) = &self.relay else {
            return Err(ServiceError::Invalid(NOT_CONFIGURED.into()));
        };
        let message = self.build(email)?;
        let bytes = message.formatted();
        if bytes.len() > self.max_message_bytes {
            return Err(too_large(self.max_message_bytes));
        }
        match tokio::time::timeout(
            relay.timeout,
            relay.transport.send_raw(message.envelope(), &bytes),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "email: the SMTP relay failed a send");
                Err(ServiceError::Upstream(safe_message(&e)))
            }
            Err(_) => {
                tracing::warn!(
                    timeout_secs = relay.timeout.as_secs(),
                    "email: the SMTP relay did not finish a send in time"
                );
                Err(ServiceError::Upstream(format!(
                    "the SMTP server did not finish within {} s (PICLOUD_SMTP_TIMEOUT_SECS)",
                    relay.timeout.as_secs()
                )))
            }
        }
    }

    /// The message, or why it cannot be sent; nothing leaves the process.
    fn build(&self, email: OutgoingEmail) -> ServiceResult<Message> {
        let from = mailbox("from", &email.from)?;
        if email.to.is_empty() {
            return Err(invalid("to needs at least one address"));
        }
        let count = email.to.len() + email.cc.len() + email.bcc.len();
        if count > self.max_recipients {
            return Err(invalid(&format!(
                "{count} recipients is more than the limit of {} (PICLOUD_EMAIL_MAX_RECIPIENTS)",
                self.max_recipients
            )));
        }
        let reply_to = match &email.reply_to {
            Some(r) => mailbox("reply_to", r)?,
            None => from.clone(),
        };
        no_line_breaks("subject", &email.subject)?;
        let body_len =
            email.text.as_ref().map_or(0, String::len) + email.html.as_ref().map_or(0, String::len);
        // Checked before encoding: the encoded message is larger still.
        if body_len > self.max_message_bytes {
            return Err(too_large(self.max_message_bytes));
        }
        if email.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(invalid(&format!(
                "subject is longer than {MAX_SUBJECT_CHARS} characters"
            )));
        }
        // A bare CR reached the relay as is (`\r.\r\n` ends the data for some
        // relays: SMTP smuggling). Every line break becomes one LF here; the encoder
        // writes each as CRLF and dot-stuffs the lines.
        let text = email.text.map(|t| one_kind_of_line_break(&t));
        let html = email.html.map(|h| one_kind_of_line_break(&h));
        let body = match (text, html) {
            (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
            (Some(text), None) => Body::Single(SinglePart::plain(text)),
            (None, Some(html)) => Body::Single(SinglePart::html(html)),
            (None, None) => return Err(invalid("text or html is required")),
        };
        let mut builder = Message::builder()
            .message_id(Some(message_id(&from)))
            .from(from)
            .reply_to(reply_to)
            .subject(email.subject);
        builder = add_all(builder, "to", &email.to, MessageBuilder::to)?;
        builder = add_all(builder, "cc", &email.cc, MessageBuilder::cc)?;
        builder = add_all(builder, "bcc", &email.bcc, MessageBuilder::bcc)?;
        let built = match body {
            Body::Multi(part) => builder.multipart(part),
            Body::Single(part) => builder.singlepart(part),
        };
        built.map_err(|e| invalid(&format!("cannot build the message: {e}")))
    }
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::Invalid(message.to_owned())
}

fn too_large(max: usize) -> ServiceError {
    ServiceError::TooLarge(format!(
        "the message is larger than the limit of {max} bytes (PICLOUD_EMAIL_MAX_MESSAGE_BYTES)"
    ))
}

/// A header value must stay one header: a CR or LF would let the script end it and
/// write its own (`Bcc:` to anyone). lettre encodes what it is given; refusing here
/// keeps the rule ours and visible.
fn no_line_breaks(field: &str, value: &str) -> ServiceResult<()> {
    if value.contains(['\r', '\n']) {
        return Err(invalid(&format!(
            "{field} must not contain line breaks (CR or LF)"
        )));
    }
    Ok(())
}

/// `a@example.com` or `Name <a@example.com>`.
fn mailbox(field: &str, value: &str) -> ServiceResult<Mailbox> {
    no_line_breaks(field, value)?;
    Mailbox::from_str(value.trim()).map_err(|_| {
        let shown: String = value.chars().take(100).collect();
        invalid(&format!("{field}: {shown:?} is not a valid email address"))
    })
}

fn add_all(
    mut builder: MessageBuilder,
    field: &str,
    values: &[String],
    add: fn(MessageBuilder, Mailbox) -> MessageBuilder,
) -> ServiceResult<MessageBuilder> {
    for value in values {
        builder = add(builder, mailbox(field, value)?);
    }
    Ok(builder)
}

/// `<random@sender-domain>`: lettre's default would name `localhost`, which spam
/// filters count against a message.
fn message_id(from: &Mailbox) -> String {
    format!(
        "<{}@{}>",
        uuid::Uuid::new_v4().simple(),
        from.email.domain()
    )
}

fn tls_parameters(host: &str, config: &EmailConfig) -> Result<TlsParameters, EmailSetupError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(path) = &config.tls_ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| EmailSetupError::CaFile {
            path: shown.clone(),
            source,
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|_| EmailSetupError::CaPem {
            path: shown.clone(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| EmailSetupError::Tls {
        host: host.to_owned(),
        message: e.to_string(),
    })
}

/// What a script may learn about a failed send: the kind of failure and the SMTP code,
/// never the relay's text.
fn safe_message(e: &lettre::transport::smtp::Error) -> String {
    let code = e.status().map(|c| c.to_string());
    let code = code.as_deref().unwrap_or("no code");
    if matches!(code, "530" | "534" | "535" | "538") {
        return format!("the SMTP server refused the credentials ({code})");
    }
    if e.is_permanent() {
        format!("the SMTP server refused the message ({code})")
    } else if e.is_transient() {
        format!("the SMTP server deferred the message ({code}); try again later")
    } else if e.is_timeout() {
        "the SMTP server did not answer in time".into()
    } else if e.is_tls() {
        "the TLS connection to the SMTP server failed".into()
    } else {
        "the connection to the SMTP server failed".into()
    }
}

/// Longest subject: a header line is at most 998 characters (RFC 5322), and the
/// subject is not folded.
const MAX_SUBJECT_CHARS: usize = 900;

/// `text` with every CRLF, bare CR and bare LF as one LF.
fn one_kind_of_line_break(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> EmailService {
        EmailService {
            relay: None,
            max_message_bytes: 4096,
            max_recipients: 3,
        }
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            from: "Shop <shop@example.com>".into(),
            to: vec!["ann@example.org".into()],
            subject: "Hello".into(),
            text: Some("hi".into()),
            ..OutgoingEmail::default()
        }
    }

    fn refused(e: OutgoingEmail) -> String {
        match service().build(e) {
            Err(ServiceError::Invalid(m) | ServiceError::TooLarge(m)) => m,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn reply_to_defaults_to_from_and_bcc_stays_out_of_the_headers() {
        let mut e = email();
        e.bcc = vec!["hidden@example.net".into()];
        let message = service().build(e).expect("valid");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(text.contains("Reply-To: Shop <shop@example.com>"), "{text}");
        assert!(!text.contains("hidden@example.net"), "{text}");
        let rcpt: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(rcpt, ["ann@example.org", "hidden@example.net"]);
    }

    /// A bare CR in a body went out raw: `\r.\r\n` ends the data for some relays,
    /// and what follows would run as commands of our session (hostile probe).
    #[test]
    fn bare_carriage_returns_never_reach_the_relay() {
        for body in [
            "T1\r.\r\nMAIL FROM:<x@y>\r\n",
            "a\rb",
            "a\n.\nb",
            "a\r\n.\r\nb",
        ] {
            let mut e = email();
            e.text = Some(body.into());
            e.html = Some(format!("<p>{body}</p>"));
            let wire = service().build(e).expect("valid").formatted();
            for (i, b) in wire.iter().enumerate() {
                if *b == b'\r' {
                    assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR in {body:?}");
                } else if *b == b'\n' {
                    assert_eq!(i.checked_sub(1).map(|p| wire[p]), Some(b'\r'), "bare LF");
                }
            }
            // Lines that are only "." are dot-stuffed by the transport, which sees
            // proper CRLF lines only.
        }
        let mut e = email();
        e.subject = "s".repeat(901);
        assert!(refused(e).contains("subject is longer than 900"));
    }

    #[test]
    fn header_injection_is_refused_in_every_header() {
        let mut e = email();
        e.subject = "Hi\r\nBcc: victim@example.com".into();
        assert!(refused(e).contains("subject must not contain line breaks"));
        let mut e = email();
        e.to = vec!["ann@example.org\nBcc: victim@example.com".into()];
        assert!(refused(e).starts_with("to must not"));
        let mut e = email();
        e.from = "Shop\r\n <shop@example.com>".into();
        assert!(refused(e).starts_with("from must not"));
        let mut e = email();
        e.reply_to = Some("x@example.com\r\nX-Evil: 1".into());
        assert!(refused(e).starts_with("reply_to must not"));
    }

    #[tokio::test]
    async fn a_ca_file_without_a_usable_certificate_stops_start_up() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let config = EmailConfig {
            relay: Some(picloud_core::config::SmtpRelay {
                host: "smtp.example.com".into(),
                port: 587,
                user: "u".into(),
                password: "p".into(),
            }),
            tls_ca_file: Some(path),
            ..EmailConfig::default()
        };
        let e = EmailService::new(&config).err().expect("refused");
        assert!(
            e.to_string().starts_with("PICLOUD_SMTP_TLS_CA_FILE: "),
            "{e}"
        );
        // Without the file the relay is set up (and nothing is sent yet).
        let config = EmailConfig {
            tls_ca_file: None,
            ..config
        };
        assert!(EmailService::new(&config).expect("relay").is_enabled());
        assert!(!EmailService::disabled().is_enabled());
    }

    #[test]
    fn bad_shapes_are_refused() {
        let mut e = email();
        e.to = vec!["not an address".into()];
        assert!(refused(e).contains("is not a valid email address"));
        let mut e = email();
        e.to.clear();
        assert!(refused(e).contains("at least one"));
        let mut e = email();
        e.text = None;
        assert!(refused(e).contains("text or html"));
        let mut e = email();
        e.cc = vec![
            "a@example.com".into(),
            "b@example.com".into(),
            "c@example.com".into(),
        ];
        assert!(refused(e).contains("PICLOUD_EMAIL_MAX_RECIPIENTS"));
        let mut e = email();
        e.text = Some("x".repeat(5000));
        assert!(refused(e).contains("PICLOUD_EMAIL_MAX_MESSAGE_BYTES"));
    }
}
