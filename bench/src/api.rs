//! A small HTTP client for everything but the load itself: readiness, the admin API,
//! execution records, metrics.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// The header carrying a data-plane run's execution id.
/// `/metrics` answers only with this token (`PICLOUD_METRICS_TOKEN`, set by
/// `server`).
pub const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";

pub const EXECUTION_HEADER: &str = "x-picloud-execution-id";

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("response is not JSON")
    }

    pub fn expect_success(self, what: &str) -> Result<Self> {
        if !self.status.is_success() {
            bail!(
                "{what}: HTTP {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        Ok(self)
    }
}

#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            client,
            base: format!("http://{addr}"),
            token: None,
        }
    }

    /// Sends one request; `host` overrides the `Host` header.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        host: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(host) = host {
            req = req.header(header::HOST, host);
        }
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        self.finish(req, payload).await
    }

    /// Sends `payload` as the raw body of an admin request (a file upload).
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        payload: Bytes,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, content_type);
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.finish(req, payload).await
    }

    async fn finish(&self, req: hyper::http::request::Builder, payload: Bytes) -> Result<Reply> {
        let response = self.client.request(req.body(Full::new(payload))?).await?;
        let (parts, body) = response.into_parts();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(Method::POST, path, None, Some(&body))
            .await?
            .expect_success(&format!("POST {path}"))?
            .json()
    }

    /// Logs in and keeps the session token for the admin calls that follow.
    pub async fn login(&mut self, email: &str, password: &str) -> Result<()> {
        let reply = self
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await?;
        let token = reply["token"].as_str().context("login: no token")?;
        self.token = Some(token.to_owned());
        Ok(())
    }

    pub async fn create_app(&self, slug: &str) -> Result<()> {
        self.post("/api/v1/admin/apps", json!({"slug": slug}))
            .await
            .map(drop)
    }

    /// Creates a script and routes `GET path` to it; returns the script id.
    pub async fn create_route(
        &self,
        app: &str,
        name: &str,
        source: &str,
        path: &str,
    ) -> Result<String> {
        let id = self.create_script(app, name, source).await?;
        self.add_route(&id, "GET", path, "sync").await?;
        Ok(id)
    }

    /// Creates a script; returns its id.
    pub async fn create_script(&self, app: &str, name: &str, source: &str) -> Result<String> {
        let script = self
            .post(
                &format!("/api/v1/admin/apps/{app}/scripts"),
                json!({"name": name, "source": source}),
            )
            .await?;
        Ok(script["id"].as_str().context("script: no id")?.to_owned())
    }

    /// Routes `method path` to a script; `dispatch_mode` is `sync` or `async`.
    pub async fn add_route(
        &self,
        script_id: &str,
        method: &str,
        path: &str,
        dispatch_mode: &str,
    ) -> Result<()> {
        self.post(
            &format!("/api/v1/admin/scripts/{script_id}/routes"),
            json!({"method": method, "path": path, "dispatch_mode": dispatch_mode}),
        )
        .await
        .map(drop)
    }

    /// Creates a trigger of `kind` with `body` (its `script_id` included).
    pub async fn create_trigger(&self, app: &str, kind: &str, body: &Value) -> Result<()> {
        self.post(
            &format!("/api/v1/admin/apps/{app}/triggers/{kind}"),
            body.clone(),
        )
        .await
        .map(drop)
    }

    /// Runs a script on every `set` of a KV collection.
    pub async fn create_kv_trigger(
        &self,
        app: &str,
        script_id: &str,
        collection: &str,
    ) -> Result<()> {
        self.post(
            &format!("/api/v1/admin/apps/{app}/triggers/kv"),
            json!({"script_id": script_id, "collection": collection, "ops": ["set"]}),
        )
        .await
        .map(drop)
    }

    /// Whether an execution record is visible yet.
    pub async fn execution_exists(&self, app: &str, id: &str) -> Result<bool> {
        let reply = self
            .get(&format!("/api/v1/admin/apps/{app}/executions/{id}"))
            .await?;
        match reply.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => bail!("GET execution {id}: HTTP {s}"),
        }
    }

    /// Counts an app's execution records by paging through all of them.
    pub async fn count_executions(&self, app: &str) -> Result<u64> {
        let items = self
            .list_all(&format!("/api/v1/admin/apps/{app}/executions"))
            .await?;
        Ok(items.len() as u64)
    }

    /// Every entry (`{key, value, updated_at}`) of a KV collection, in key order.
    pub async fn kv_entries(&self, app: &str, collection: &str) -> Result<Vec<Value>> {
        self.list_all(&format!("/api/v1/admin/apps/{app}/kv/{collection}"))
            .await
    }

    /// Pages through an admin list 500 items at a time.
    async fn list_all(&self, path: &str) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}?limit=500");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", query_escape(c)));
            }
            let page = self
                .get(&url)
                .await?
                .expect_success(&format!("GET {path}"))?
                .json()?;
            let items = page["items"]
                .as_array()
                .with_context(|| format!("GET {path}: no items"))?;
            all.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    /// `/metrics`, read with the metrics token instead of the session.
    async fn scrape(&self) -> Result<Reply> {
        let scraper = Api {
            token: Some(METRICS_TOKEN.to_owned()),
            ..self.clone()
        };
        scraper.get("/metrics").await?.expect_success("metrics")
    }

    /// The value of one series of `/metrics`, e.g. `picloud_executor_queue_depth` or
    /// `picloud_executions_total{status="ok"}`; 0 when the series is not there yet.
    pub async fn metric(&self, series: &str) -> Result<f64> {
        let reply = self.scrape().await?;
        let text = String::from_utf8_lossy(&reply.body);
        let value = text
            .lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse::<f64>().ok());
        Ok(value.unwrap_or(0.0))
    }

    /// The sum of every `picloud_executions_total` series in `/metrics`.
    pub async fn executions_total_metric(&self) -> Result<u64> {
        let reply = self.scrape().await?;
        let text = String::from_utf8_lossy(&reply.body);
        let total = text
            .lines()
            .filter(|l| l.starts_with("picloud_executions_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        Ok(total as u64)
    }
}

/// Percent-encodes everything but the unreserved characters, for a query value.
fn query_escape(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::query_escape;

    #[test]
    fn escapes_query_values() {
        assert_eq!(query_escape("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(query_escape("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
