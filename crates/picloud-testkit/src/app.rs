//! [`TestApp`]: a real PiCloud server on a random port, with its own database, driven
//! over HTTP.

use std::time::Duration;

use picloud::Started;
use picloud_core::config::Config;
use picloud_services::http::TestHosts;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::db::TestDb;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery";
/// The `/metrics` token every test server is started with.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// Which database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    /// `http://127.0.0.1:{port}`
    pub base: String,
    pub client: reqwest::Client,
    /// A session token of the bootstrapped instance admin (empty when the test turned
    /// the bootstrap off).
    pub admin_token: String,
    pub backend: Backend,
    started: Option<Started>,
    /// `None` for a second node sharing another's database.
    _db: Option<TestDb>,
    database_url: String,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    /// A server with default settings; `None` when the backend is unavailable here
    /// (PostgreSQL without `PICLOUD_TEST_DATABASE_URL`).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    /// A server whose configuration `tune` adjusts first.
    pub async fn start_with(backend: Backend, tune: impl FnOnce(&mut Config)) -> Option<Self> {
        Self::start_with_hosts(backend, tune, TestHosts::default()).await
    }

    /// [`TestApp::start_with`], with fixed host-name answers for outbound `http::*`.
    pub async fn start_with_hosts(
        backend: Backend,
        tune: impl FnOnce(&mut Config),
        hosts: TestHosts,
    ) -> Option<Self> {
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite().await,
            Backend::Postgres => TestDb::postgres().await?,
        };
        let url = db.url().to_owned();
        Some(Self::boot(backend, Some(db), url, tune, hosts).await)
    }

    /// Another server on this one's database, with its own data directory and the
    /// same admin: a second node (PostgreSQL). The database lives as long as the first
    /// server's `TestApp`, so stop this one first or keep the first alive.
    pub async fn start_node(&self, tune: impl FnOnce(&mut Config)) -> Self {
        Self::boot(
            self.backend,
            None,
            self.database_url.clone(),
            tune,
            TestHosts::default(),
        )
        .await
    }

    async fn boot(
        backend: Backend,
        db: Option<TestDb>,
        database_url: String,
        tune: impl FnOnce(&mut Config),
        hosts: TestHosts,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.listen = ([127, 0, 0, 1], 0).into();
        config.data_dir = data_dir.path().to_path_buf();
        config.files_root = data_dir.path().join("files");
        config.database_url = Some(database_url.clone());
        config.dev_mode = true;
        config.admin_email = Some(ADMIN_EMAIL.into());
        config.admin_password = Some(ADMIN_PASSWORD.into());
        config.metrics.token = Some(METRICS_TOKEN.into());
        tune(&mut config);
        let config_admin = (config.admin_email.clone(), config.admin_password.clone());
        let started = picloud::start_with_hosts(config, hosts)
            .await
            .expect("server starts");
        let base = format!("http://{}", started.addr);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut app = Self {
            base,
            client,
            admin_token: String::new(),
            backend,
            started: Some(started),
            _db: db,
            database_url,
            _data_dir: data_dir,
        };
        if let (Some(email), Some(password)) = (&config_admin.0, &config_admin.1) {
            app.admin_token = app.login(email, password).await;
        }
        app
    }

    /// The database this server runs on (`sqlite://…` or `postgres://…`).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn started(&self) -> &Started {
        self.started.as_ref().expect("running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), 200, "login as {email}");
        let body: Value = r.json().await.expect("login body");
        body["token"].as_str().expect("token").to_owned()
    }

    /// The Prometheus text of `/metrics`, read with the metrics token.
    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics request");
        assert_eq!(r.status(), 200, "metrics with the token");
        r.text().await.expect("metrics text")
    }

    /// An admin API call as the instance admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call_as(&self.admin_token, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("admin request")
    }

    /// Binds `script` (a created script's JSON) to `method path` with `auth:
    /// "required"`: callers need a token holding `script:invoke`.
    pub async fn required_route(&self, script: &Value, method: &str, path: &str) {
        let id = script["id"].as_str().expect("script id");
        self.admin_ok(
            Method::POST,
            &format!("/api/v1/admin/scripts/{id}/routes"),
            Some(serde_json::json!({"method": method, "path": path, "auth": "required"})),
            201,
        )
        .await;
    }

    /// A new API key of the instance admin with `scopes`; returns the key itself.
    pub async fn api_key(&self, scopes: &[&str]) -> String {
        let key = self
            .admin_ok(
                Method::POST,
                "/api/v1/admin/api-keys",
                Some(serde_json::json!({"name": "test key", "scopes": scopes})),
                201,
            )
            .await;
        key["key"].as_str().expect("key").to_owned()
    }

    /// Uploads a file through the admin API as the instance admin; returns its
    /// metadata (201 asserted).
    pub async fn upload(
        &self,
        app: &str,
        collection: &str,
        name: &str,
        content_type: &str,
        bytes: impl Into<reqwest::Body>,
    ) -> Value {
        let r = self
            .client
            .post(self.url(&format!("/api/v1/admin/apps/{app}/files/{collection}")))
            .query(&[("name", name)])
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .bearer_auth(&self.admin_token)
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, 201, "upload {name}: {text}");
        serde_json::from_str(&text).expect("file metadata")
    }

    /// An admin call that must answer `status`; returns the JSON body (or null).
    pub async fn admin_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let r = self.admin(method.clone(), path, body).await;
        let got = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(got, status, "{method} {path} answered {got}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn create_app(&self, slug: &str) -> Value {
        self.admin_ok(
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": slug})),
            201,
        )
        .await
    }

    pub async fn create_script(&self, app: &str, name: &str, source: &str) -> Value {
        self.admin_ok(
            Method::POST,
            &format!("/api/v1/admin/apps/{app}/scripts"),
            Some(json!({"name": name, "source": source})),
            201,
        )
        .await
    }

    pub async fn create_route(&self, script_id: &str, method: &str, path: &str) -> Value {
        self.admin_ok(
            Method::POST,
            &format!("/api/v1/admin/scripts/{script_id}/routes"),
            Some(json!({"method": method, "path": path})),
            201,
        )
        .await
    }

    /// Creates (if needed) the app, a script with `source`, and a route to it.
    /// Returns the script id.
    pub async fn deploy(&self, app: &str, method: &str, path: &str, source: &str) -> String {
        let exists = self
            .admin(Method::GET, &format!("/api/v1/admin/apps/{app}"), None)
            .await
            .status()
            == 200;
        if !exists {
            self.create_app(app).await;
        }
        let name = format!("s{}", rand::random::<u32>());
        let script = self.create_script(app, &name, source).await;
        let id = script["id"].as_str().expect("script id").to_owned();
        self.create_route(&id, method, path).await;
        id
    }

    /// A data-plane request addressed by Host (`{slug}.localhost`).
    pub fn on_host(&self, slug: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("host", format!("{slug}.localhost"))
    }

    /// A data-plane request addressed by path (`/apps/{slug}/…`).
    pub fn on_path(&self, slug: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(&format!("/apps/{slug}{path}")))
    }

    /// Polls `check` until it returns `Some`, failing after a generous deadline.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The app's execution records, newest first (waits for at least `n`).
    pub async fn executions(&self, app: &str, n: usize) -> Vec<Value> {
        self.eventually("execution records", || async {
            let body = self
                .admin_ok(
                    Method::GET,
                    &format!("/api/v1/admin/apps/{app}/executions?limit=500"),
                    None,
                    200,
                )
                .await;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= n).then_some(items)
        })
        .await
    }

    /// One execution record by id (waits until it is written).
    pub async fn execution(&self, app: &str, id: &str) -> Value {
        self.eventually("the run's record", || async {
            let r = self
                .admin(
                    Method::GET,
                    &format!("/api/v1/admin/apps/{app}/executions/{id}"),
                    None,
                )
                .await;
            if r.status() == 200 {
                r.json::<Value>().await.ok()
            } else {
                None
            }
        })
        .await
    }

    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Shuts the server down but keeps its database (other nodes may still use it).
    pub async fn stop(&mut self) {
        if let Some(started) = self.started.take() {
            started.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Generates `sqlite::<name>` and `postgres::<name>` tests from one async body taking a
/// [`TestApp`]-starting [`Backend`].
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident => $body:ident),+ $(,)?) => {
        // The server's own runtime (script-sized stacks, inline runs allowed), so the
        // tests exercise what production runs.
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    picloud::runtime(Some(2))
                        .expect("runtime")
                        .block_on(super::$body($crate::app::Backend::Sqlite));
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if $crate::db::postgres_admin_url().is_none() { return; }
                    picloud::runtime(Some(2))
                        .expect("runtime")
                        .block_on(super::$body($crate::app::Backend::Postgres));
                }
            )+
        }
    };
}
