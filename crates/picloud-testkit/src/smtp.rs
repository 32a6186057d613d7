//! [`TestSmtpServer`]: a small SMTP server for outbound-email tests, on a real socket.
//!
//! It speaks enough of RFC 5321 for a real client: EHLO/HELO, STARTTLS, AUTH PLAIN and
//! LOGIN, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT; and records every
//! accepted message with its envelope, the credentials used and whether it came over
//! TLS. Its TLS certificate is issued by a throw-away CA made at start
//! ([`TestSmtpServer::ca_pem`]), which the client must be told to trust.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// How the server behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpMode {
    /// Advertises AUTH and accepts any credentials (recording them), or none.
    Normal,
    /// Refuses MAIL before a successful AUTH with exactly these credentials.
    RequireAuth { user: String, password: String },
    /// Refuses AUTH and MAIL before STARTTLS (and only offers AUTH after it).
    StartTls,
    /// TLS from the first byte (port-465 style).
    ImplicitTls,
    /// Accepts the connection and never says a word.
    Hang,
    /// Answers every RCPT with a permanent 550 that names an internal host (which a
    /// client must not pass on to its users).
    RejectRecipients,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent, CRLF line ends, dot-unstuffed, without the final `.`.
    pub data: String,
    /// `(user, password)` of the AUTH that preceded it.
    pub auth: Option<(String, String)>,
    pub tls: bool,
}

impl ReceivedMail {
    /// The value of the first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.eq_ignore_ascii_case(name) {
                let mut value = value.trim().to_owned();
                while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                }
                return Some(value);
            }
        }
        None
    }
}

#[derive(Default)]
struct Shared {
    messages: Vec<ReceivedMail>,
    connections: usize,
}

pub struct TestSmtpServer {
    pub addr: std::net::SocketAddr,
    ca_pem: String,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for TestSmtpServer {
    fn drop(&mut self) {
        // The connection tasks live in the accept task's JoinSet and go with it.
        self.task.abort();
    }
}

impl TestSmtpServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(mode: SmtpMode) -> Self {
        let (ca_pem, acceptor) = tls_acceptor();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test smtp server");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                state.lock().connections += 1;
                sessions.spawn(connection(
                    tcp,
                    mode.clone(),
                    acceptor.clone(),
                    state.clone(),
                ));
                // Reap finished sessions so the set does not grow without bound.
                while sessions.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            ca_pem,
            shared,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The PEM of the CA that issued the server's certificate (for 127.0.0.1 and
    /// localhost).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.lock().messages.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Waits (generously) until `n` messages have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} messages arrived",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A fresh CA and a server certificate it issued for 127.0.0.1 and localhost.
fn tls_acceptor() -> (String, TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (ca.pem(), TlsAcceptor::from(Arc::new(config)))
}

async fn connection(
    mut tcp: TcpStream,
    mode: SmtpMode,
    acceptor: TlsAcceptor,
    shared: Arc<Mutex<Shared>>,
) {
    match mode {
        SmtpMode::Hang => {
            // Hold the socket open, silent, until the server is dropped.
            std::future::pending::<()>().await;
        }
        SmtpMode::ImplicitTls => {
            if let Ok(tls) = acceptor.accept(tcp).await {
                session(tls, &mode, true, true, &shared).await;
            }
        }
        _ => {
            if session(&mut tcp, &mode, false, true, &shared).await == End::StartTls {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    session(tls, &mode, true, false, &shared).await;
                }
            }
        }
    }
}

#[derive(PartialEq, Eq)]
enum End {
    Closed,
    StartTls,
}

#[derive(Default)]
struct Txn {
    auth: Option<(String, String)>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mode: &SmtpMode,
    tls: bool,
    greet: bool,
    shared: &Mutex<Shared>,
) -> End {
    let mut io = BufReader::new(stream);
    if greet && say(&mut io, "220 test-smtp ESMTP ready").await.is_err() {
        return End::Closed;
    }
    let needs_tls = *mode == SmtpMode::StartTls && !tls;
    let mut txn = Txn::default();
    loop {
        let Some(line) = read_line(&mut io).await else {
            return End::Closed;
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let verb = verb.to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["250-test-smtp greets you", "250-8BITMIME"];
                if needs_tls {
                    lines.push("250-STARTTLS");
                } else {
                    lines.push("250-AUTH PLAIN LOGIN");
                }
                lines.push("250 SMTPUTF8");
                lines.join("\r\n")
            }
            "HELO" => "250 test-smtp".into(),
            "STARTTLS" if needs_tls => {
                let _ = say(&mut io, "220 2.0.0 go ahead").await;
                return End::StartTls;
            }
            "STARTTLS" => "502 5.5.1 not available".into(),
            _ if needs_tls && verb != "QUIT" && verb != "NOOP" => {
                "530 5.7.0 must issue a STARTTLS command first".into()
            }
            "AUTH" => match auth(&mut io, rest).await {
                None => return End::Closed,
                Some(Err(reply)) => reply,
                Some(Ok((user, password))) => match mode {
                    SmtpMode::RequireAuth {
                        user: want_user,
                        password: want_password,
                    } if (&user, &password) != (want_user, want_password) => {
                        "535 5.7.8 authentication credentials invalid".into()
                    }
                    _ => {
                        txn.auth = Some((user, password));
                        "235 2.7.0 authenticated".into()
                    }
                },
            },
            "MAIL" => {
                if matches!(mode, SmtpMode::RequireAuth { .. }) && txn.auth.is_none() {
                    "530 5.7.0 authentication required".into()
                } else {
                    txn.mail_from = Some(angle(rest));
                    txn.rcpt_to.clear();
                    "250 2.1.0 ok".into()
                }
            }
            "RCPT" if *mode == SmtpMode::RejectRecipients => {
                "550 5.1.1 no such user here (relay.internal.corp says: quota of mailbox-7)".into()
            }
            "RCPT" if txn.mail_from.is_none() => "503 5.5.1 MAIL first".into(),
            "RCPT" => {
                txn.rcpt_to.push(angle(rest));
                "250 2.1.5 ok".into()
            }
            "DATA" if txn.rcpt_to.is_empty() => "503 5.5.1 RCPT first".into(),
            "DATA" => {
                if say(&mut io, "354 end with <CRLF>.<CRLF>").await.is_err() {
                    return End::Closed;
                }
                let Some(data) = read_data(&mut io).await else {
                    return End::Closed;
                };
                shared.lock().messages.push(ReceivedMail {
                    mail_from: txn.mail_from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut txn.rcpt_to),
                    data,
                    auth: txn.auth.clone(),
                    tls,
                });
                "250 2.0.0 queued".into()
            }
            "RSET" => {
                txn.mail_from = None;
                txn.rcpt_to.clear();
                "250 2.0.0 ok".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "QUIT" => {
                let _ = say(&mut io, "221 2.0.0 bye").await;
                return End::Closed;
            }
            _ => "500 5.5.2 unknown command".into(),
        };
        if say(&mut io, &reply).await.is_err() {
            return End::Closed;
        }
    }
}

/// `AUTH PLAIN [initial]` or `AUTH LOGIN [user]`: the credentials, or the reply that
/// refuses them; `None` when the client went away.
async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    rest: &str,
) -> Option<Result<(String, String), String>> {
    let (mechanism, initial) = rest.split_once(' ').unwrap_or((rest, ""));
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| {
        b64.decode(s.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let encoded = if initial.is_empty() {
                say(io, "334 ").await.ok()?;
                read_line(io).await?
            } else {
                initial.to_owned()
            };
            let Some(text) = decode(&encoded) else {
                return Some(Err("501 5.5.2 bad base64".into()));
            };
            let mut parts = text.split('\0').skip(1);
            match (parts.next(), parts.next()) {
                (Some(user), Some(password)) => Some(Ok((user.to_owned(), password.to_owned()))),
                _ => Some(Err("501 5.5.2 bad PLAIN response".into())),
            }
        }
        "LOGIN" => {
            let user = if initial.is_empty() {
                say(io, "334 VXNlcm5hbWU6").await.ok()?;
                read_line(io).await?
            } else {
                initial.to_owned()
            };
            say(io, "334 UGFzc3dvcmQ6").await.ok()?;
            let password = read_line(io).await?;
            match (decode(&user), decode(&password)) {
                (Some(user), Some(password)) => Some(Ok((user, password))),
                _ => Some(Err("501 5.5.2 bad base64".into())),
            }
        }
        _ => Some(Err("504 5.5.4 mechanism not supported".into())),
    }
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn angle(rest: &str) -> String {
    let start = rest.find('<').map_or(0, |i| i + 1);
    let end = rest[start..].find('>').map_or(rest.len(), |i| start + i);
    rest[start..end].to_owned()
}

async fn say<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    reply: &str,
) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(reply.as_bytes()).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// One command line without its CRLF; `None` at the end of the stream.
async fn read_line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match io.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

/// The DATA section up to the lone `.`, dot-unstuffed.
async fn read_data<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut data = String::new();
    loop {
        let line = read_line(io).await?;
        if line == "." {
            return Some(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}
