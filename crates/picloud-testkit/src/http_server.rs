//! [`TestHttpServer`]: a local HTTP server for outbound-HTTP tests (`http::*`).
//!
//! - `/echo` (any method): `{method, path, query, headers, body}` as JSON
//! - `/status/{code}`: that status, body `{"status": code}`
//! - `/redirect?to=URL&status=302`: a redirect to `to`
//! - `/chain/{n}`: `n` redirects in a row, then `/echo`
//! - `/slow?ms=N`: answers after `N` ms
//! - `/bytes?n=N[&chunked=1]`: `N` bytes of `a` (chunked: no content-length)
//! - `/zeros?n=N`: a JSON array of `N` zeros
//! - `/text`, `/json`, `/binary`: fixed bodies of those types
//! - `/peer`: the client's address as text (tells connections apart)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

pub struct TestHttpServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestHttpServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test http server");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new()
            .route("/echo", any(echo))
            .route("/status/{code}", any(status))
            .route("/redirect", any(redirect))
            .route("/chain/{n}", any(chain))
            .route("/slow", get(slow))
            .route("/bytes", get(bytes))
            .route(
                "/zeros",
                get(|Query(q): Query<BTreeMap<String, usize>>| async move {
                    Json(vec![0; q.get("n").copied().unwrap_or(0)])
                }),
            )
            .route("/text", get(|| async { "hello" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route(
                "/json",
                get(|| async { Json(json!({"ok": true, "n": [1, 2]})) }),
            )
            .route(
                "/binary",
                get(|| async {
                    (
                        [("content-type", "application/octet-stream")],
                        vec![0xffu8, 0x00, 0xfe],
                    )
                }),
            );
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        Self { addr, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:{port}{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
    }))
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({"status": code}))).into_response()
}

async fn redirect(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let to = q.get("to").cloned().unwrap_or_else(|| "/echo".into());
    let code = q
        .get("status")
        .and_then(|s| s.parse().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::FOUND);
    (code, [("location", to)]).into_response()
}

async fn chain(Path(n): Path<u32>) -> Response {
    let to = if n == 0 {
        "/echo".to_owned()
    } else {
        format!("/chain/{}", n - 1)
    };
    (StatusCode::FOUND, [("location", to)]).into_response()
}

async fn slow(Query(q): Query<BTreeMap<String, String>>) -> &'static str {
    let ms = q.get("ms").and_then(|s| s.parse().ok()).unwrap_or(1000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

async fn bytes(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let n: usize = q.get("n").and_then(|s| s.parse().ok()).unwrap_or(0);
    if q.contains_key("chunked") {
        let chunks = (0..n.div_ceil(1024)).map(move |i| {
            let len = 1024.min(n - i * 1024);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; len]))
        });
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        return ([("content-type", "text/plain")], body).into_response();
    }
    ([("content-type", "text/plain")], vec![b'a'; n]).into_response()
}
