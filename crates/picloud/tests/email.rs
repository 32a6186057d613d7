//! `email::send` / `email::send_html` end to end: the real server, a route's script,
//! and a real SMTP listener in the test (`picloud_testkit::smtp`) — plain, AUTH,
//! STARTTLS and implicit TLS with a private CA, a relay that never answers, one that
//! answers 5xx; header injection, disabled mode, the capability.

use std::time::{Duration, Instant};

use picloud_core::config::{Config, EmailConfig, SmtpRelay, SmtpTls};
use picloud_testkit::{backend_tests, Backend, SmtpMode, TestApp, TestSmtpServer};
use reqwest::Method;
use serde_json::{json, Value};

const USER: &str = "mailer";
const PASSWORD: &str = "s3cret-relay-password";

/// Sends `ctx.request.body` with the function the path names and reports the outcome.
const SEND: &str = r#"
    let out = #{ok: true};
    try {
        if ctx.request.path == "/send_html" {
            email::send_html(ctx.request.body);
        } else {
            email::send(ctx.request.body);
        }
    } catch (e) {
        out = #{ok: false, error: `${e}`};
    }
    out
"#;

/// The relay `smtp` as the configuration names it.
fn relay(smtp: &TestSmtpServer, tls: SmtpTls) -> EmailConfig {
    EmailConfig {
        relay: Some(SmtpRelay {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            user: USER.into(),
            password: PASSWORD.into(),
        }),
        tls,
        timeout: Duration::from_secs(5),
        ..EmailConfig::default()
    }
}

async fn server(backend: Backend, tune: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let app = TestApp::start_with(backend, tune).await?;
    app.deploy("shop", "POST", "/send", SEND).await;
    app.deploy("shop", "POST", "/send_html", SEND).await;
    Some(app)
}

async fn send(app: &TestApp, path: &str, message: Value) -> Value {
    let r = app
        .on_host("shop", Method::POST, path)
        .json(&message)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("json")
}

fn error_of(out: &Value) -> &str {
    assert_eq!(out["ok"], false, "{out}");
    out["error"].as_str().expect("error text")
}

fn basic() -> Value {
    json!({"from": "shop@example.com", "to": "ann@example.org", "subject": "Hi", "text": "hello"})
}

backend_tests! {
    a_route_delivers_a_message => delivers,
}

async fn delivers(backend: Backend) {
    let smtp = TestSmtpServer::start(SmtpMode::Normal).await;
    let Some(app) = server(backend, |c| c.email = relay(&smtp, SmtpTls::None)).await else {
        return;
    };
    let out = send(
        &app,
        "/send",
        json!({
            "from": "Shop <shop@example.com>",
            "to": ["ann@example.org", "Bob <bob@example.org>"],
            "cc": "carol@example.org",
            "bcc": ["dave@example.net"],
            "subject": "Your order",
            "text": "plain words",
            "html": "<p>rich words</p>",
        }),
    )
    .await;
    assert_eq!(out["ok"], true, "{out}");
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.mail_from, "shop@example.com");
    assert_eq!(
        mail.rcpt_to,
        [
            "ann@example.org",
            "bob@example.org",
            "carol@example.org",
            "dave@example.net"
        ]
    );
    assert_eq!(mail.auth, Some((USER.to_owned(), PASSWORD.to_owned())));
    assert!(!mail.tls);
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Shop <shop@example.com>")
    );
    assert_eq!(
        mail.header("To").as_deref(),
        Some("ann@example.org, Bob <bob@example.org>")
    );
    assert_eq!(mail.header("Cc").as_deref(), Some("carol@example.org"));
    assert_eq!(mail.header("Bcc"), None, "Bcc stays out of the headers");
    assert!(!mail.data.contains("dave@"), "{}", mail.data);
    assert_eq!(mail.header("Subject").as_deref(), Some("Your order"));
    // reply_to defaults to from.
    assert_eq!(
        mail.header("Reply-To").as_deref(),
        Some("Shop <shop@example.com>")
    );
    let id = mail.header("Message-ID").expect("message id");
    assert!(id.ends_with("@example.com>"), "{id}");
    assert!(mail
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("multipart/alternative")));
    assert!(
        mail.data.contains("Content-Type: text/plain"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("plain words"));
    assert!(mail.data.contains("Content-Type: text/html"));
    assert!(mail.data.contains("<p>rich words</p>"));

    // A second message reuses the pooled connection.
    let out = send(&app, "/send_html", {
        let mut m = basic();
        m.as_object_mut().expect("map").remove("text");
        m["html"] = json!("<b>again</b>");
        m["reply_to"] = json!("help@example.com");
        m
    })
    .await;
    assert_eq!(out["ok"], true, "{out}");
    let mail = smtp.wait_for(2).await.remove(1);
    assert_eq!(mail.header("Reply-To").as_deref(), Some("help@example.com"));
    assert!(mail
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert_eq!(smtp.connections(), 1, "the pool reused the connection");
    app.shutdown().await;
}

#[tokio::test]
async fn the_relay_checks_the_credentials() {
    let smtp = TestSmtpServer::start(SmtpMode::RequireAuth {
        user: USER.into(),
        password: PASSWORD.into(),
    })
    .await;
    let app = server(Backend::Sqlite, |c| c.email = relay(&smtp, SmtpTls::None))
        .await
        .expect("server");
    let out = send(&app, "/send", basic()).await;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        smtp.wait_for(1).await[0]
            .auth
            .as_ref()
            .map(|a| a.0.as_str()),
        Some(USER)
    );
    app.shutdown().await;

    let app = server(Backend::Sqlite, |c| {
        c.email = relay(&smtp, SmtpTls::None);
        if let Some(r) = c.email.relay.as_mut() {
            r.password = "wrong-password".into();
        }
    })
    .await
    .expect("server");
    let out = send(&app, "/send", basic()).await;
    let error = error_of(&out);
    assert_eq!(
        error,
        "email: the SMTP server refused the credentials (535)"
    );
    assert_eq!(smtp.messages().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn starttls_trusts_a_private_ca_and_nothing_else() {
    let smtp = TestSmtpServer::start(SmtpMode::StartTls).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, smtp.ca_pem()).expect("write ca");

    // Without the CA the server's certificate is refused: no silent downgrade.
    let app = server(Backend::Sqlite, |c| {
        c.email = relay(&smtp, SmtpTls::StartTls)
    })
    .await
    .expect("server");
    let out = send(&app, "/send", basic()).await;
    assert!(error_of(&out).starts_with("email: "), "{out}");
    assert!(smtp.messages().is_empty());
    app.shutdown().await;

    let app = server(Backend::Sqlite, |c| {
        c.email = relay(&smtp, SmtpTls::StartTls);
        c.email.tls_ca_file = Some(ca.clone());
    })
    .await
    .expect("server");
    let out = send(&app, "/send", basic()).await;
    assert_eq!(out["ok"], true, "{out}");
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(mail.tls, "sent after STARTTLS");
    assert_eq!(mail.auth, Some((USER.to_owned(), PASSWORD.to_owned())));
    app.shutdown().await;
}

#[tokio::test]
async fn implicit_tls() {
    let smtp = TestSmtpServer::start(SmtpMode::ImplicitTls).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, smtp.ca_pem()).expect("write ca");
    let app = server(Backend::Sqlite, |c| {
        c.email = relay(&smtp, SmtpTls::Tls);
        c.email.tls_ca_file = Some(ca.clone());
    })
    .await
    .expect("server");
    let out = send(&app, "/send", basic()).await;
    assert_eq!(out["ok"], true, "{out}");
    assert!(smtp.wait_for(1).await[0].tls);
    app.shutdown().await;
}

/// A relay that accepts the connection and never answers costs the script the SMTP
/// timeout, not its whole run, and the request does not hang.
#[tokio::test]
async fn a_silent_relay_times_out() {
    let smtp = TestSmtpServer::start(SmtpMode::Hang).await;
    let app = server(Backend::Sqlite, |c| {
        c.email = relay(&smtp, SmtpTls::None);
        c.email.timeout = Duration::from_secs(1);
        c.limits.route_timeout = Duration::from_secs(20);
    })
    .await
    .expect("server");
    let started = Instant::now();
    let out = send(&app, "/send", basic()).await;
    let took = started.elapsed();
    assert_eq!(
        error_of(&out),
        "email: the SMTP server did not finish within 1 s (PICLOUD_SMTP_TIMEOUT_SECS)"
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(smtp.connections(), 1);
    app.shutdown().await;
}

/// A 5xx is an `email:` error with the code, never the relay's own text.
#[tokio::test]
async fn a_refusal_is_an_email_error_without_the_relays_words() {
    let smtp = TestSmtpServer::start(SmtpMode::RejectRecipients).await;
    let app = server(Backend::Sqlite, |c| c.email = relay(&smtp, SmtpTls::None))
        .await
        .expect("server");
    let out = send(&app, "/send", basic()).await;
    let error = error_of(&out);
    assert_eq!(error, "email: the SMTP server refused the message (550)");
    assert!(!error.contains("internal"));
    assert!(smtp.messages().is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn bad_messages_are_refused_before_anything_is_sent() {
    let smtp = TestSmtpServer::start(SmtpMode::Normal).await;
    let app = server(Backend::Sqlite, |c| {
        c.email = relay(&smtp, SmtpTls::None);
        c.email.max_message_bytes = 2048;
        c.email.max_recipients = 2;
    })
    .await
    .expect("server");
    let with = |key: &str, value: Value| {
        let mut m = basic();
        m[key] = value;
        m
    };
    let without = |key: &str| {
        let mut m = basic();
        m.as_object_mut().expect("map").remove(key);
        m
    };
    for (path, message, expected) in [
        (
            "/send",
            with("subject", json!("Hi\r\nBcc: victim@example.com")),
            "email: subject must not contain line breaks (CR or LF)",
        ),
        (
            "/send",
            with("to", json!(["ann@example.org\nBcc: victim@example.com"])),
            "email: to must not contain line breaks (CR or LF)",
        ),
        (
            "/send",
            with("reply_to", json!("a@example.com\r\nX-Evil: 1")),
            "email: reply_to must not contain line breaks (CR or LF)",
        ),
        (
            "/send",
            with("from", json!("not an address")),
            "email: from: \"not an address\" is not a valid email address",
        ),
        ("/send", without("text"), "email: text or html is required"),
        ("/send", without("from"), "email: from is required"),
        ("/send", with("to", json!([])), "email: to needs at least one address"),
        (
            "/send",
            with("to", json!(42)),
            "email: to must be a string or an array of strings",
        ),
        (
            "/send",
            with("attachments", json!([])),
            "email: unknown key \"attachments\": use to, from, subject, text, html, cc, bcc or reply_to",
        ),
        (
            "/send",
            with("cc", json!(["b@example.org", "c@example.org"])),
            "email: 3 recipients is more than the limit of 2 (PICLOUD_EMAIL_MAX_RECIPIENTS)",
        ),
        (
            "/send",
            with("text", json!("x".repeat(3000))),
            "email: the message is larger than the limit of 2048 bytes (PICLOUD_EMAIL_MAX_MESSAGE_BYTES)",
        ),
        ("/send_html", basic(), "email: send_html needs html"),
    ] {
        let out = send(&app, path, message).await;
        assert_eq!(error_of(&out), expected);
    }
    assert!(smtp.messages().is_empty());
    assert_eq!(smtp.connections(), 0, "nothing reached the relay");
    app.shutdown().await;
}

#[tokio::test]
async fn without_a_relay_email_is_not_configured() {
    let app = server(Backend::Sqlite, |c| {
        // Host alone: a partial set-up is disabled too (API.md).
        c.email = EmailConfig {
            missing: vec!["PICLOUD_SMTP_USER", "PICLOUD_SMTP_PASSWORD"],
            ..EmailConfig::default()
        };
    })
    .await
    .expect("server");
    let out = send(&app, "/send", basic()).await;
    assert_eq!(error_of(&out), "email: not configured");
    app.shutdown().await;
}

/// `email::*` needs script:write when the run acts for a caller.
#[tokio::test]
async fn callers_need_script_write() {
    let smtp = TestSmtpServer::start(SmtpMode::Normal).await;
    let app = server(Backend::Sqlite, |c| c.email = relay(&smtp, SmtpTls::None))
        .await
        .expect("server");
    let script = app
        .create_script(
            "shop",
            "mail",
            r#"email::send(#{from: "shop@example.com", to: "ann@example.org", subject: "Hi", text: "x"}); "sent""#,
        )
        .await;
    let id = script["id"].as_str().expect("id");
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/scripts/{id}/routes"),
        Some(json!({"method": "POST", "path": "/mail", "auth": "required"})),
        201,
    )
    .await;
    for (scopes, expected) in [
        (json!(["script:invoke"]), 403),
        (json!(["script:invoke", "script:read"]), 403),
        (json!(["script:invoke", "script:write"]), 200),
    ] {
        let key = app
            .admin_ok(
                Method::POST,
                "/api/v1/admin/api-keys",
                Some(json!({"name": "k", "scopes": scopes})),
                201,
            )
            .await;
        let r = app
            .on_host("shop", Method::POST, "/mail")
            .bearer_auth(key["key"].as_str().expect("key"))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, expected, "{scopes}: {text}");
    }
    assert_eq!(
        smtp.wait_for(1).await.len(),
        1,
        "only the writer's run sent"
    );
    app.shutdown().await;
}
