//! `email::send(#{…})` and `email::send_html(#{…})`: one message through the
//! operator's SMTP relay.

use picloud_services::OutgoingEmail;
use rhai::plugin::*;
use rhai::{Dynamic, Map};

use super::{call, error};

const NS: &str = "email";

const KEYS: &str = "to, from, subject, text, html, cc, bcc or reply_to";

type EmailResult<T> = std::result::Result<T, Box<EvalAltResult>>;

fn string(key: &str, value: &Dynamic) -> EmailResult<String> {
    value
        .clone()
        .into_string()
        .map_err(|_| error(NS, format!("{key} must be a string")))
}

/// `to`, `cc`, `bcc`: a string or an array of strings (SCRIPTING.md); `()` is none.
fn addresses(key: &str, value: &Dynamic) -> EmailResult<Vec<String>> {
    if value.is_unit() {
        return Ok(Vec::new());
    }
    if value.is_string() {
        return Ok(vec![string(key, value)?]);
    }
    let Some(array) = value.read_lock::<rhai::Array>() else {
        return Err(error(
            NS,
            format!("{key} must be a string or an array of strings"),
        ));
    };
    array
        .iter()
        .map(|item| {
            item.clone()
                .into_string()
                .map_err(|_| error(NS, format!("{key} must be a string or an array of strings")))
        })
        .collect()
}

/// `()` counts as not given, so a script can pass an optional value through.
fn optional(key: &str, value: &Dynamic) -> EmailResult<Option<String>> {
    if value.is_unit() {
        Ok(None)
    } else {
        string(key, value).map(Some)
    }
}

fn parse(message: &Map) -> EmailResult<OutgoingEmail> {
    let mut email = OutgoingEmail::default();
    let (mut from, mut subject) = (None, None);
    for (key, value) in message {
        match key.as_str() {
            "to" => email.to = addresses("to", value)?,
            "cc" => email.cc = addresses("cc", value)?,
            "bcc" => email.bcc = addresses("bcc", value)?,
            "from" => from = Some(string("from", value)?),
            "subject" => subject = Some(string("subject", value)?),
            "reply_to" => email.reply_to = optional("reply_to", value)?,
            "text" => email.text = optional("text", value)?,
            "html" => email.html = optional("html", value)?,
            other => return Err(error(NS, format!("unknown key {other:?}: use {KEYS}"))),
        }
    }
    email.from = from.ok_or_else(|| error(NS, "from is required"))?;
    email.subject = subject.ok_or_else(|| error(NS, "subject is required"))?;
    Ok(email)
}

fn send_parsed(email: OutgoingEmail) -> EmailResult<()> {
    call(NS, |s, ctx| async move { s.email.send(&ctx, email).await })
}

#[export_module]
mod email_ns {
    use super::*;

    /// Sends one message: `#{to, from, subject, text?, html?, cc?, bcc?, reply_to?}`.
    /// `to`, `cc` and `bcc` take a string or an array of strings; addresses may carry a
    /// name (`"Ann <ann@example.com>"`); `text` or `html` (or both, as alternatives) is
    /// required; `reply_to` defaults to `from`. Returns once the relay accepted it;
    /// throws `email: not configured` when the instance has no SMTP relay.
    #[rhai_fn(return_raw)]
    pub fn send(message: Map) -> Result<(), Box<EvalAltResult>> {
        send_parsed(parse(&message)?)
    }

    /// `send` for an HTML message: `html` is required (`text`, if given, is the plain
    /// alternative).
    #[rhai_fn(return_raw)]
    pub fn send_html(message: Map) -> Result<(), Box<EvalAltResult>> {
        let email = parse(&message)?;
        if email.html.is_none() {
            return Err(error(NS, "send_html needs html"));
        }
        send_parsed(email)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(email_ns)
}
