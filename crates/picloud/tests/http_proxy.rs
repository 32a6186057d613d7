//! Outbound `http::*` ignores the system proxy settings: a proxy would receive every
//! request and the guard's resolver would never see the target. Alone in its test
//! binary because it sets process-wide environment variables.

use std::net::{IpAddr, Ipv4Addr};

use picloud_services::http::TestHosts;
use picloud_testkit::{Backend, TestApp, TestHttpServer};
use reqwest::Method;

#[tokio::test]
async fn system_proxies_are_ignored() {
    // Port 9 (discard) refuses connections: a client that used the proxy would fail.
    // The harness's own client reaches the server directly through NO_PROXY.
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        std::env::set_var(var, "http://127.0.0.1:9");
    }
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
    let up = TestHttpServer::start().await;
    let port = up.port();
    let hosts = TestHosts::default().trusted("public.test", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let app =
        TestApp::start_with_hosts(Backend::Sqlite, |c| c.http.allowed_ports.push(port), hosts)
            .await
            .expect("server");
    app.create_app("shop").await;
    app.deploy(
        "shop",
        "GET",
        "/direct",
        &format!(r#"http::get("http://public.test:{port}/text").body"#),
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/direct")
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!((status.as_u16(), text.as_str()), (200, "hello"));
}
