//! `http::*`: outbound requests from scripts, behind the SSRF guard.
//!
//! One shared client (connection reuse across runs). Every hop is checked before it is
//! sent: scheme, port and literal addresses here, resolved addresses in the client's
//! resolver. Redirects are followed here rather than by reqwest so that each request
//! can have its own limit and credentials never cross to another origin.

mod client;
pub mod guard;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use picloud_core::access::Capability;
use picloud_core::config::HttpConfig;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE,
    LOCATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use reqwest::{Method, StatusCode};
use url::Url;

use client::ResolveError;
pub use client::TestHosts;
use guard::{Blocked, Policy};

use crate::{CallContext, ServiceError, ServiceResult};

/// Redirects followed when a request sets no `max_redirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
/// The most a request may ask for.
pub const MAX_REDIRECTS_CAP: u32 = 20;

/// A request body and the content type it gets unless the script sets one.
#[derive(Debug, Clone)]
pub struct OutboundBody {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// One request as the script asked for it.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<OutboundBody>,
    /// The script's own limit; the configured one applies as well.
    pub timeout: Option<Duration>,
    pub follow_redirects: bool,
    pub max_redirects: u32,
}

impl OutboundRequest {
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            timeout: None,
            follow_redirects: true,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }
}

/// What came back: header names lower-case, repeated headers joined with `, `.
#[derive(Debug, Clone)]
pub struct InboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl InboundResponse {
    /// The media type, lower-case, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .and_then(|(_, v)| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
    }
}

/// Why one exchange failed; every message is safe for the script (no addresses).
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("could not resolve host")]
    NotResolved,
    #[error("connection failed")]
    Connect,
    #[error("request failed")]
    Request,
    #[error("too many redirects (max {0})")]
    TooManyRedirects(u32),
    #[error("invalid redirect location")]
    BadLocation,
    #[error("response body larger than {0} bytes")]
    ResponseTooLarge(usize),
}

impl From<HttpError> for ServiceError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Blocked(b) => ServiceError::Invalid(b.to_string()),
            other => ServiceError::Upstream(other.to_string()),
        }
    }
}

fn send_error(e: &reqwest::Error) -> HttpError {
    match client::find_cause(e) {
        Some(ResolveError::Blocked(b)) => HttpError::Blocked(*b),
        Some(ResolveError::NotFound) => HttpError::NotResolved,
        None => {
            // The full error may name the peer's address: logs only.
            tracing::debug!(error = ?e, "outbound http request failed");
            if e.is_connect() {
                HttpError::Connect
            } else {
                HttpError::Request
            }
        }
    }
}

pub struct HttpService {
    /// Built on first use: its TLS roots cost a few MiB of memory that a server whose
    /// scripts never call out should not carry.
    client: OnceLock<Result<reqwest::Client, String>>,
    hosts: TestHosts,
    policy: Arc<Policy>,
    config: HttpConfig,
}

impl HttpService {
    /// The service for `config`. `hosts` is empty outside tests (see [`TestHosts`]).
    pub fn new(config: &HttpConfig, hosts: TestHosts) -> Self {
        let policy = Arc::new(Policy {
            allowed_ports: config.allowed_ports.clone(),
            allow_private: config.allow_private,
        });
        Self {
            client: OnceLock::new(),
            hosts,
            policy,
            config: config.clone(),
        }
    }

    /// The largest request body (`PICLOUD_HTTP_MAX_REQUEST_BODY_BYTES`).
    pub fn max_request_body_bytes(&self) -> usize {
        self.config.max_request_body_bytes
    }

    /// The shared client, built by the first call that needs it.
    fn client(&self) -> ServiceResult<&reqwest::Client> {
        self.client
            .get_or_init(|| {
                client::build(self.policy.clone(), self.hosts.clone()).map_err(|e| {
                    tracing::error!(error = %e, "cannot build the outbound http client");
                    "the outbound client is unavailable; see the server log".to_owned()
                })
            })
            .as_ref()
            .map_err(|m| ServiceError::Invalid(m.clone()))
    }

    /// Sends `request`, following redirects as it asks. Non-2xx answers are answers,
    /// not errors.
    pub async fn request(
        &self,
        ctx: &CallContext,
        request: OutboundRequest,
    ) -> ServiceResult<InboundResponse> {
        ctx.require(Capability::HttpRequest)?;
        let method = parse_method(&request.method)?;
        let url = Url::parse(&request.url)
            .map_err(|e| ServiceError::Invalid(format!("invalid URL: {e}")))?;
        if let Some(body) = &request.body {
            if body.bytes.len() > self.config.max_request_body_bytes {
                return Err(ServiceError::Invalid(format!(
                    "request body larger than {} bytes",
                    self.config.max_request_body_bytes
                )));
            }
        }
        if request.max_redirects > MAX_REDIRECTS_CAP {
            return Err(ServiceError::Invalid(format!(
                "max_redirects must be 0 to {MAX_REDIRECTS_CAP}"
            )));
        }
        let headers = build_headers(ctx, &request)?;
        let limit = request
            .timeout
            .map_or(self.config.timeout, |t| t.min(self.config.timeout));
        let client = self.client()?;
        let exchange = self.exchange(
            client,
            method,
            url,
            headers,
            request.body.map(|b| b.bytes),
            {
                if request.follow_redirects {
                    Some(request.max_redirects)
                } else {
                    None
                }
            },
        );
        match tokio::time::timeout(limit, exchange).await {
            Ok(Err(HttpError::Blocked(blocked))) => {
                // Operators see refusals (scripts probing the network show up here).
                tracing::warn!(
                    app = %ctx.app_id,
                    script = ?ctx.script_id.as_ref().map(|s| s.to_string()),
                    category = %blocked.0,
                    "outbound http request blocked by the SSRF guard"
                );
                Err(ServiceError::from(HttpError::Blocked(blocked)))
            }
            Ok(result) => result.map_err(ServiceError::from),
            Err(_) => Err(ServiceError::Upstream(format!(
                "timed out after {} ms",
                limit.as_millis()
            ))),
        }
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        mut method: Method,
        mut url: Url,
        mut headers: HeaderMap,
        mut body: Option<Vec<u8>>,
        max_redirects: Option<u32>,
    ) -> Result<InboundResponse, HttpError> {
        let mut hops = 0;
        loop {
            self.policy.check_url(&url)?;
            let mut builder = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(bytes) = &body {
                builder = builder.body(bytes.clone());
            }
            let response = builder.send().await.map_err(|e| send_error(&e))?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            match (max_redirects, location) {
                (Some(max), Some(location)) if is_redirect(status) => {
                    if hops >= max {
                        return Err(HttpError::TooManyRedirects(max));
                    }
                    hops += 1;
                    let next = location
                        .to_str()
                        .ok()
                        .and_then(|l| url.join(l).ok())
                        .ok_or(HttpError::BadLocation)?;
                    // As browsers do: 303 always, and 301/302 after a POST, become a
                    // GET without body; 307/308 repeat the request as it was.
                    let to_get = status == StatusCode::SEE_OTHER
                        || (method == Method::POST && matches!(status.as_u16(), 301 | 302));
                    if to_get && method != Method::HEAD {
                        method = Method::GET;
                        body = None;
                        headers.remove(CONTENT_TYPE);
                        headers.remove(CONTENT_LENGTH);
                    }
                    if next.origin() != url.origin() {
                        for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
                            headers.remove(name);
                        }
                    }
                    url = next;
                }
                _ => return self.read(method, response).await,
            }
        }
    }

    async fn read(
        &self,
        method: Method,
        mut response: reqwest::Response,
    ) -> Result<InboundResponse, HttpError> {
        let max = self.config.max_response_body_bytes;
        let status = response.status().as_u16();
        let headers = collect_headers(response.headers());
        let mut body = Vec::new();
        if method != Method::HEAD {
            if response.content_length().is_some_and(|n| n > max as u64) {
                return Err(HttpError::ResponseTooLarge(max));
            }
            while let Some(chunk) = response.chunk().await.map_err(|e| send_error(&e))? {
                if body.len() + chunk.len() > max {
                    return Err(HttpError::ResponseTooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
        }
        Ok(InboundResponse {
            status,
            headers,
            body,
        })
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn parse_method(method: &str) -> ServiceResult<Method> {
    let upper = method.to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
            Method::from_bytes(upper.as_bytes())
                .map_err(|_| ServiceError::Invalid(format!("unsupported method {method:?}")))
        }
        _ => Err(ServiceError::Invalid(format!(
            "unsupported method {method:?}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"
        ))),
    }
}

fn build_headers(ctx: &CallContext, request: &OutboundRequest) -> ServiceResult<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ServiceError::Invalid(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ServiceError::Invalid(format!("invalid value for header {name:?}")))?;
        headers.append(header, value);
    }
    if !headers.contains_key(USER_AGENT) {
        let agent = match &ctx.script_id {
            Some(id) => format!("picloud/{} (script:{id})", env!("CARGO_PKG_VERSION")),
            None => format!("picloud/{}", env!("CARGO_PKG_VERSION")),
        };
        if let Ok(value) = HeaderValue::from_str(&agent) {
            headers.insert(USER_AGENT, value);
        }
    }
    if let Some(body) = &request.body {
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(body.content_type));
        }
    }
    Ok(headers)
}

fn collect_headers(map: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in map {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.iter_mut().find(|(k, _)| k == name.as_str()) {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => out.push((name.as_str().to_owned(), value)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use picloud_core::access::Scope;
    use picloud_core::config::Config;
    use picloud_core::{AppId, ScriptId};

    use super::*;

    fn service(tune: impl FnOnce(&mut HttpConfig)) -> HttpService {
        let mut config = Config::defaults().http;
        tune(&mut config);
        HttpService::new(&config, TestHosts::default())
    }

    fn ctx(scopes: Option<Vec<Scope>>) -> CallContext {
        CallContext {
            app_id: AppId::new(),
            caller_scopes: scopes,
            depth: 0,
            script_id: Some(ScriptId::new()),
        }
    }

    /// Everything here is refused before a connection is attempted.
    #[tokio::test]
    async fn refusals_before_any_connection() {
        let s = service(|c| c.max_request_body_bytes = 4);
        let get = OutboundRequest::new("GET", "http://127.0.0.1/");
        let reader = ctx(Some(vec![Scope::ScriptRead, Scope::ScriptInvoke]));
        assert!(matches!(
            s.request(&reader, get.clone()).await,
            Err(ServiceError::Forbidden(_))
        ));
        let writer = ctx(Some(vec![Scope::ScriptWrite]));
        match s.request(&writer, get).await {
            Err(ServiceError::Invalid(m)) => assert_eq!(m, "blocked: loopback"),
            other => panic!("{other:?}"),
        }
        let mut big = OutboundRequest::new("POST", "http://example.com/");
        big.body = Some(OutboundBody {
            bytes: vec![0; 5],
            content_type: "application/octet-stream",
        });
        match s.request(&ctx(None), big).await {
            Err(ServiceError::Invalid(m)) => assert_eq!(m, "request body larger than 4 bytes"),
            other => panic!("{other:?}"),
        }
        let odd = OutboundRequest::new("CONNECT", "http://example.com/");
        assert!(matches!(
            s.request(&ctx(None), odd).await,
            Err(ServiceError::Invalid(_))
        ));
    }

    #[test]
    fn default_headers() {
        let cx = ctx(None);
        let mut request = OutboundRequest::new("POST", "http://example.com/");
        request.body = Some(OutboundBody {
            bytes: b"{}".to_vec(),
            content_type: "application/json",
        });
        let headers = build_headers(&cx, &request).expect("headers");
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
        let expected = format!(
            "picloud/{} (script:{})",
            env!("CARGO_PKG_VERSION"),
            cx.script_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert_eq!(agent, Some(expected.as_str()));
        assert_eq!(
            headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        request.headers = vec![
            ("User-Agent".into(), "mine".into()),
            ("content-type".into(), "application/vnd.x+json".into()),
        ];
        let headers = build_headers(&cx, &request).expect("headers");
        assert_eq!(
            headers.get(USER_AGENT).map(|v| v.as_bytes()),
            Some(&b"mine"[..])
        );
        assert_eq!(headers.get_all(CONTENT_TYPE).iter().count(), 1);
    }

    #[test]
    fn repeated_response_headers_are_joined() {
        let mut map = HeaderMap::new();
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2"));
        map.append("x-one", HeaderValue::from_static("1"));
        let headers = collect_headers(&map);
        assert!(headers.contains(&("set-cookie".into(), "a=1, b=2".into())));
        assert!(headers.contains(&("x-one".into(), "1".into())));
    }
}
