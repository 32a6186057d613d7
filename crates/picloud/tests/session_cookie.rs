//! Session fixation: a script answering under `/apps/{slug}/` shares the dashboard's
//! origin, so it must not be able to set cookies or any other origin-wide state there;
//! and the server reads only the session cookie it set itself, never one planted under
//! the same name by an app (or a sibling host).

use picloud_testkit::app::{ADMIN_EMAIL, ADMIN_PASSWORD};
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// A script answering with every header that could change state of the origin it is
/// served from, plus ordinary ones an app legitimately sends.
const LOUD_SCRIPT: &str = r#"#{
    status: 200,
    headers: #{
        "set-cookie": "picloud_session=pcs_planted; Path=/api/v1; HttpOnly",
        "Set-Cookie": "__Host-picloud_session=pcs_planted; Path=/; Secure",
        "SET-COOKIE": "picloud_session=pcs_tossed; Path=/; Domain=localhost",
        "clear-site-data": "\"cookies\", \"storage\"",
        "service-worker-allowed": "/",
        "refresh": "0; url=/_/",
        "link": "</_/evil.js>; rel=preload; as=script",
        "content-security-policy": "default-src *",
        "content-security-policy-report-only": "default-src 'none'",
        "strict-transport-security": "max-age=0",
        "nel": "{\"report_to\":\"x\",\"max_age\":86400,\"include_subdomains\":true}",
        "report-to": "{\"group\":\"x\",\"max_age\":86400,\"endpoints\":[{\"url\":\"https://evil.example/\"}]}",
        "reporting-endpoints": "x=\"https://evil.example/\"",
        "alt-svc": "h2=\"evil.example:443\"; ma=86400",
        "origin-agent-cluster": "?0",
        "accept-ch": "Sec-CH-UA-Model",
        "permissions-policy": "camera=*",
        "cross-origin-opener-policy": "unsafe-none",
        "x-frame-options": "ALLOWALL",
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "etag": "\"v1\"",
        "vary": "Accept",
        "content-language": "en",
        "access-control-allow-origin": "*",
        "location": "/apps/shop/elsewhere",
        "x-app-tag": "kept",
    },
    body: "<p>hello</p>",
}"#;

const DROPPED: &[&str] = &[
    "set-cookie",
    "clear-site-data",
    "service-worker-allowed",
    "refresh",
    "link",
    "content-security-policy-report-only",
    "strict-transport-security",
    "nel",
    "report-to",
    "reporting-endpoints",
    "alt-svc",
    "origin-agent-cluster",
    "accept-ch",
    "permissions-policy",
    "cross-origin-opener-policy",
];

const KEPT: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("etag", "\"v1\""),
    ("vary", "Accept"),
    ("content-language", "en"),
    ("access-control-allow-origin", "*"),
    ("location", "/apps/shop/elsewhere"),
    ("x-app-tag", "kept"),
];

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn path_responses_cannot_touch_the_dashboard_origin(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy("shop", "GET", "/loud", LOUD_SCRIPT).await;

    let r = app
        .on_path("shop", Method::GET, "/loud")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    for name in DROPPED {
        assert_eq!(
            header(&r, name),
            None,
            "{name} must not reach the dashboard's origin"
        );
    }
    for (name, value) in KEPT {
        assert_eq!(header(&r, name).as_deref(), Some(*value), "{name} is kept");
    }
    assert_eq!(
        header(&r, "content-security-policy").as_deref(),
        Some("sandbox allow-scripts allow-forms allow-popups allow-downloads"),
        "only the server's sandbox policy, never the script's"
    );
    assert!(header(&r, "x-picloud-execution-id").is_some());
    assert_eq!(r.text().await.expect("body"), "<p>hello</p>");

    // On its own host an app is its own origin: it may set cookies there (for that
    // host only: one for a wider domain would reach the dashboard), and everything
    // else it sends passes untouched.
    let r = app
        .on_host("shop", Method::GET, "/loud")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    let cookies: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        cookies.iter().any(|c| c.contains("pcs_planted")),
        "{cookies:?}"
    );
    assert!(
        !cookies.iter().any(|c| c.contains("pcs_tossed")),
        "a cookie for a wider domain is dropped: {cookies:?}"
    );
    assert_eq!(
        header(&r, "clear-site-data").as_deref(),
        Some("\"cookies\", \"storage\"")
    );
    assert_eq!(
        header(&r, "content-security-policy").as_deref(),
        Some("default-src *")
    );
    app.shutdown().await;
}

/// Logs in for a cookie; `proto` is what a TLS-terminating proxy would say.
async fn cookie_login(app: &TestApp, proto: Option<&str>) -> (String, String) {
    let mut req = app.client.post(app.url("/api/v1/auth/login")).json(&json!({
        "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "cookie": true
    }));
    if let Some(proto) = proto {
        req = req.header("x-forwarded-proto", proto);
    }
    let r = req.send().await.expect("login");
    assert_eq!(r.status(), 200);
    let set_cookie = header(&r, "set-cookie").expect("a session cookie");
    let body: Value = r.json().await.expect("json");
    assert!(body.get("token").is_none());
    (
        set_cookie,
        body["csrf_token"].as_str().expect("csrf").to_owned(),
    )
}

/// `GET /api/v1/auth/me` with exactly this Cookie header; the email it answers for.
async fn me_with(app: &TestApp, cookie: &str, proto: Option<&str>) -> Option<String> {
    let mut req = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("cookie", cookie);
    if let Some(proto) = proto {
        req = req.header("x-forwarded-proto", proto);
    }
    let r = req.send().await.expect("me");
    if r.status() != 200 {
        assert_eq!(r.status(), 401);
        return None;
    }
    let body: Value = r.json().await.expect("json");
    body["email"].as_str().map(str::to_owned)
}

fn pair(set_cookie: &str) -> (String, String) {
    let first = set_cookie.split(';').next().expect("pair");
    let (name, value) = first.split_once('=').expect("name=value");
    (name.to_owned(), value.to_owned())
}

async fn only_the_servers_own_cookie_is_read(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    // The attacker's own, perfectly valid session: planting it would sign the
    // operator into the attacker's account.
    app.started()
        .state
        .store
        .create_user(picloud_store::NewUser {
            email: "mallory@example.com".into(),
            password_hash: picloud_core::crypto::hash_password("mallory password"),
            is_admin: false,
        })
        .await
        .expect("user");
    let planted = app.login("mallory@example.com", "mallory password").await;

    // Behind TLS: a `__Host-` cookie, which only this exact host can set (no Domain,
    // Path=/, Secure), so a sibling host cannot toss one in.
    let https = Some("https");
    let (set_cookie, _) = cookie_login(&app, https).await;
    let (name, real) = pair(&set_cookie);
    assert_eq!(name, "__Host-picloud_session", "{set_cookie}");
    for part in ["Path=/;", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(part), "{part} in {set_cookie}");
    }
    assert!(!set_cookie.to_ascii_lowercase().contains("domain="));
    let admin = Some(ADMIN_EMAIL.to_owned());
    assert_eq!(me_with(&app, &format!("{name}={real}"), https).await, admin);
    // A planted cookie under the old name is never read over TLS: not alone, and not
    // before the real one (a longer Path is sent first).
    assert_eq!(
        me_with(&app, &format!("picloud_session={planted}"), https).await,
        None
    );
    assert_eq!(
        me_with(
            &app,
            &format!("picloud_session={planted}; {name}={real}"),
            https
        )
        .await,
        admin
    );

    // Plain HTTP to an address (the dev server, a LAN IP): no `Secure` (the browser
    // would drop the cookie), the session stays under /api.
    let (set_cookie, csrf) = cookie_login(&app, None).await;
    let (name, real) = pair(&set_cookie);
    assert_eq!(name, "picloud_session", "{set_cookie}");
    assert!(set_cookie.contains("Path=/api;"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let cookie = format!("{name}={real}");
    assert_eq!(me_with(&app, &cookie, None).await, admin);
    // Several cookies under the session's name: one was planted, and nothing tells
    // which, so none is honoured.
    for both in [
        format!("picloud_session={planted}; {cookie}"),
        format!("{cookie}; picloud_session={planted}"),
    ] {
        assert_eq!(me_with(&app, &both, None).await, None, "{both}");
    }

    // App scripts never see either cookie.
    app.deploy("shop", "GET", "/cookie", "ctx.request.headers.cookie")
        .await;
    let r = app
        .on_path("shop", Method::GET, "/cookie")
        .header(
            "cookie",
            format!("theme=dark; __Host-picloud_session=pcs_x; {cookie}; lang=en"),
        )
        .send()
        .await
        .expect("r");
    assert_eq!(r.text().await.expect("text"), "theme=dark; lang=en");

    // Logout clears the cookie it was signed in with.
    let r = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    let cleared = header(&r, "set-cookie").expect("cleared");
    assert!(
        cleared.starts_with("picloud_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    path_responses_cannot_set_cookies_or_origin_state => path_responses_cannot_touch_the_dashboard_origin,
    only_the_session_cookie_the_server_set_is_read => only_the_servers_own_cookie_is_read,
);
