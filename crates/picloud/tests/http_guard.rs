//! The SSRF guard end to end, switched on: scripts on a real server try hostile
//! targets — every category and IPv4 spelling, names that resolve to internal
//! addresses, redirects from an allowed host to internal ones — and each is refused
//! with `http: blocked: <category>`, never naming the address.
//!
//! The allowed host is `public.test`, which a test-only resolver entry points at the
//! local test server (`TestHosts` cannot be filled from configuration).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use picloud_services::http::TestHosts;
use picloud_testkit::{Backend, TestApp, TestHttpServer};
use reqwest::Method;
use serde_json::json;

const FETCH: &str = r#"
    let out = ();
    try {
        let r = http::get(ctx.request.body.url);
        out = `reached ${r.status}`;
    } catch (e) {
        out = `${e}`;
    }
    out
"#;

async fn guarded(up: &TestHttpServer, backend: Backend) -> Option<TestApp> {
    let hosts = TestHosts::default()
        .trusted("public.test", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .resolve(
            "internal.test",
            vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))],
        )
        .resolve(
            "metadata.test",
            vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))],
        )
        .resolve(
            "ula.test",
            vec![IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7))],
        )
        .resolve(
            "mapped.test",
            vec![IpAddr::V6(Ipv4Addr::new(192, 168, 7, 7).to_ipv6_mapped())],
        );
    let port = up.port();
    let app = TestApp::start_with_hosts(
        backend,
        |c| {
            assert!(!c.http.allow_private, "the guard is on by default");
            c.http.allowed_ports.push(port);
        },
        hosts,
    )
    .await?;
    app.create_app("shop").await;
    app.deploy("shop", "POST", "/fetch", FETCH).await;
    Some(app)
}

async fn fetch(app: &TestApp, url: &str) -> String {
    let r = app
        .on_host("shop", Method::POST, "/fetch")
        .json(&json!({"url": url}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.text().await.expect("body")
}

async fn hostile_targets(backend: Backend) {
    let up = TestHttpServer::start().await;
    let Some(app) = guarded(&up, backend).await else {
        return;
    };
    let p = up.port();
    // The allowed host answers: the redirects below start from a reachable hop.
    assert_eq!(
        fetch(&app, &format!("http://public.test:{p}/echo")).await,
        "reached 200"
    );

    let via = |to: &str| format!("http://public.test:{p}/redirect?to={to}");
    // (target, category, address spellings that must not appear in the answer)
    let table: Vec<(String, &str, Vec<&str>)> = vec![
        ("http://127.0.0.1/".into(), "loopback", vec!["127.0.0.1"]),
        (
            format!("http://127.0.0.1:{p}/echo"),
            "loopback",
            vec!["127.0.0.1"],
        ),
        (
            "http://127.1/".into(),
            "loopback",
            vec!["127.0.0.1", "127.1"],
        ),
        (
            "http://2130706433/".into(),
            "loopback",
            vec!["127.0.0.1", "2130706433"],
        ),
        (
            "http://0177.0.0.1/".into(),
            "loopback",
            vec!["127.0.0.1", "0177"],
        ),
        (
            "http://0x7f000001/".into(),
            "loopback",
            vec!["127.0.0.1", "0x7f"],
        ),
        (
            "http://0x7f.1/".into(),
            "loopback",
            vec!["127.0.0.1", "0x7f"],
        ),
        ("http://10.0.0.1/".into(), "private", vec!["10.0.0.1"]),
        ("http://172.16.0.1/".into(), "private", vec!["172.16.0.1"]),
        ("http://192.168.1.1/".into(), "private", vec!["192.168.1.1"]),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "link-local",
            vec!["169.254.169.254"],
        ),
        ("http://100.64.0.1/".into(), "cgnat", vec!["100.64.0.1"]),
        ("http://224.0.0.1/".into(), "multicast", vec!["224.0.0.1"]),
        ("http://240.0.0.1/".into(), "reserved", vec!["240.0.0.1"]),
        (
            "http://255.255.255.255/".into(),
            "reserved",
            vec!["255.255.255.255"],
        ),
        ("http://0.0.0.0/".into(), "unspecified", vec!["0.0.0.0"]),
        ("http://[::1]/".into(), "loopback", vec!["::1"]),
        ("http://[::]/".into(), "unspecified", vec!["[::]"]),
        ("http://[fc00::1]/".into(), "unique-local", vec!["fc00"]),
        ("http://[fe80::1]/".into(), "link-local", vec!["fe80"]),
        ("http://[ff02::1]/".into(), "multicast", vec!["ff02"]),
        (
            "http://[::ffff:127.0.0.1]/".into(),
            "loopback",
            vec!["127.0.0.1", "ffff"],
        ),
        (
            "http://[::ffff:7f00:1]/".into(),
            "loopback",
            vec!["7f00", "127.0.0.1"],
        ),
        (
            "http://[::127.0.0.1]/".into(),
            "loopback",
            vec!["127.0.0.1", "7f00"],
        ),
        (
            "http://[64:ff9b::7f00:1]/".into(),
            "loopback",
            vec!["64:ff9b", "127.0.0.1"],
        ),
        (
            "http://[64:ff9b::a9fe:a9fe]/".into(),
            "link-local",
            vec!["a9fe", "169.254"],
        ),
        ("ftp://example.com/".into(), "scheme", vec![]),
        ("http://example.com:22/".into(), "port", vec![]),
        // Names whose addresses are internal: the resolver refuses them.
        (
            format!("http://localhost:{p}/echo"),
            "loopback",
            vec!["127.0.0.1", "::1"],
        ),
        ("http://internal.test/".into(), "private", vec!["10.0.0.5"]),
        (
            "http://metadata.test/".into(),
            "link-local",
            vec!["169.254"],
        ),
        ("http://ula.test/".into(), "unique-local", vec!["fd00"]),
        (
            "http://mapped.test/".into(),
            "private",
            vec!["192.168", "ffff"],
        ),
        // Redirects from the allowed host: every hop is checked.
        (via("http://127.0.0.1/"), "loopback", vec!["127.0.0.1"]),
        (
            via(&format!("http://localhost:{p}/echo")),
            "loopback",
            vec!["127.0.0.1", "::1"],
        ),
        (via("http://internal.test/"), "private", vec!["10.0.0.5"]),
        (
            via("http://169.254.169.254/latest/meta-data/"),
            "link-local",
            vec!["169.254"],
        ),
        (
            via("http://[::ffff:10.0.0.1]/"),
            "private",
            vec!["10.0.0.1", "ffff"],
        ),
        (via("http://2130706433/"), "loopback", vec!["127.0.0.1"]),
        (via("ftp://public.test/"), "scheme", vec![]),
        (via("http://public.test:22/"), "port", vec![]),
    ];
    assert!(table.len() >= 25);
    for (url, category, spellings) in &table {
        let answer = fetch(&app, url).await;
        assert_eq!(answer, format!("http: blocked: {category}"), "{url}");
        for s in spellings {
            assert!(!answer.contains(s), "{url} leaked {s}: {answer}");
        }
    }

    // Uncaught, the refusal is a script error whose public body names no address.
    app.deploy(
        "shop",
        "GET",
        "/uncaught",
        r#"http::get("http://internal.test/")"#,
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/uncaught")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 500);
    let text = r.text().await.expect("body");
    assert!(!text.contains("10.0.0.5"), "{text}");
    let failed = app
        .eventually("the failed run's record", || async {
            let body = app
                .admin_ok(
                    Method::GET,
                    "/api/v1/admin/apps/shop/executions?status=error",
                    None,
                    200,
                )
                .await;
            body["items"].as_array().and_then(|i| i.first().cloned())
        })
        .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("http: blocked: private"), "{failed}");
    assert!(!failed.to_string().contains("10.0.0.5"), "{failed}");
}

#[tokio::test]
async fn hostile_targets_sqlite() {
    hostile_targets(Backend::Sqlite).await;
}

#[tokio::test]
async fn hostile_targets_postgres() {
    hostile_targets(Backend::Postgres).await;
}
