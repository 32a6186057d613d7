//! Login CSRF: a page elsewhere (another site, or an app on a sibling host) must not be
//! able to sign the operator's browser in, or out, or through set-up. The endpoints
//! that set cookies take only JSON (which a page can send cross-origin only after a
//! preflight) and refuse requests a browser marks as cross-origin; clients that are
//! not browsers (curl, scripts, the CLI) send neither header and still work.

use picloud_testkit::app::{ADMIN_EMAIL, ADMIN_PASSWORD};
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Default, Clone, Copy)]
struct Browserish<'a> {
    content_type: Option<&'a str>,
    origin: Option<&'a str>,
    fetch_site: Option<&'a str>,
}

async fn send(app: &TestApp, path: &str, body: &Value, how: Browserish<'_>) -> (u16, Value) {
    let mut req = app.client.post(app.url(path)).body(body.to_string());
    if let Some(ct) = how.content_type {
        req = req.header("content-type", ct);
    }
    if let Some(origin) = how.origin {
        req = req.header("origin", origin);
    }
    if let Some(site) = how.fetch_site {
        req = req.header("sec-fetch-site", site);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

const JSON: Option<&str> = Some("application/json");

async fn cookie_endpoints_refuse_cross_origin_requests(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let login = "/api/v1/auth/login";
    let creds = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "cookie": true});
    let own = app.base.clone();
    let port = own.rsplit(':').next().expect("port").to_owned();

    // A form or `fetch(…, {mode: "no-cors"})` elsewhere can only send these types.
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (status, body) = send(
            &app,
            login,
            &creds,
            Browserish {
                content_type,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type:?}: {body}"
        );
    }

    // JSON from another origin: refused whatever else it says.
    let sibling = format!("http://shop.localhost:{port}");
    for (origin, fetch_site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (Some(sibling.as_str()), None),
        (Some("https://evil.example"), Some("cross-site")),
        (None, Some("cross-site")),
        (None, Some("same-site")),
        (Some(sibling.as_str()), Some("same-site")),
        // Sec-Fetch-Site, when a browser sends it, is decisive.
        (Some(own.as_str()), Some("same-site")),
    ] {
        let (status, body) = send(
            &app,
            login,
            &creds,
            Browserish {
                content_type: JSON,
                origin,
                fetch_site,
            },
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "Origin {origin:?}, Sec-Fetch-Site {fetch_site:?}: {body}"
        );
    }

    // The dashboard itself, curl, and JSON with a charset all sign in.
    for (content_type, origin, fetch_site) in [
        (JSON, Some(own.as_str()), Some("same-origin")),
        (JSON, Some(own.as_str()), None),
        (JSON, None, Some("same-origin")),
        (JSON, None, None),
        (Some("application/json; charset=utf-8"), None, None),
    ] {
        let (status, body) = send(
            &app,
            login,
            &creds,
            Browserish {
                content_type,
                origin,
                fetch_site,
            },
        )
        .await;
        assert_eq!(
            status, 200,
            "{content_type:?} {origin:?} {fetch_site:?}: {body}"
        );
    }

    // Logout clears the cookie: a foreign page must not sign the operator out either,
    // even if it somehow held the CSRF token.
    let r = app
        .client
        .post(app.url(login))
        .json(&creds)
        .send()
        .await
        .expect("login");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let body: Value = r.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().expect("csrf").to_owned();
    let logout = |origin: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/logout"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .header("origin", origin)
            .send()
    };
    assert_eq!(
        logout("https://evil.example").await.expect("r").status(),
        403
    );
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200, "still signed in");
    // The same cross-origin rule holds for every cookie-authenticated change.
    let r = app
        .client
        .post(app.url("/api/v1/admin/apps"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "same-site")
        .json(&json!({"slug": "shop"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 403);
    // Bearer clients are not browsers' ambient credentials: no origin rule for them.
    let r = app
        .client
        .request(Method::POST, app.url("/api/v1/admin/apps"))
        .bearer_auth(&app.admin_token)
        .header("origin", "https://tools.example")
        .json(&json!({"slug": "shop"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 201);
    app.shutdown().await;
}

async fn setup_refuses_cross_origin_requests(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.admin_email = None;
        c.admin_password = None;
    })
    .await
    .expect("server");
    let token = app.started().setup_token.clone().expect("set-up token");
    let body = json!({"token": token, "email": "root@example.com", "password": "long enough"});
    let (status, _) = send(
        &app,
        "/api/v1/auth/setup",
        &body,
        Browserish {
            content_type: Some("text/plain"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, 415);
    let (status, _) = send(
        &app,
        "/api/v1/auth/setup",
        &body,
        Browserish {
            content_type: JSON,
            origin: Some("https://evil.example"),
            fetch_site: Some("cross-site"),
        },
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = send(
        &app,
        "/api/v1/auth/setup",
        &body,
        Browserish {
            content_type: JSON,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status, 201, "{body}");
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    cookie_setting_endpoints_refuse_cross_origin_browsers => cookie_endpoints_refuse_cross_origin_requests,
    setup_refuses_cross_origin_browsers => setup_refuses_cross_origin_requests,
);
