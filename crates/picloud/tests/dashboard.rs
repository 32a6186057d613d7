//! The dashboard at `/_/`: the serving rules of the embedded bundle, and the
//! end-to-end flow in real headless Chromium (`dashboard/e2e/flow.mjs`) against this
//! server. Backend-independent (the dashboard only speaks HTTP), so SQLite only.

use std::path::PathBuf;
use std::time::Duration;

use picloud_testkit::{Backend, TestApp};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The hashed asset paths the app shell links to.
fn asset_paths(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/_/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_rules() {
    let app = TestApp::start(Backend::Sqlite).await.expect("server");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: &str| client.get(app.url(path)).send();

    // The shell: never cached, locked down, and the same page for every client route.
    let r = get("/_/").await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert!(header(&r, "content-security-policy").contains("default-src 'self'"));
    assert_eq!(header(&r, "x-frame-options"), "DENY");
    let shell = r.text().await.expect("html");
    assert!(shell.contains("<div id=\"app\">"), "{shell}");
    for deep in ["/_/apps/shop/scripts/scr_1", "/_/keys", "/_/users?x=1"] {
        let r = get(deep).await.expect("request");
        assert_eq!(r.status(), 200, "{deep}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{deep}");
        assert_eq!(r.text().await.expect("html"), shell, "{deep} is the shell");
    }

    // Hashed assets: a year, immutable, with their real types.
    let assets = asset_paths(&shell);
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{assets:?}");
    for asset in &assets {
        let r = get(asset).await.expect("request");
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable",
            "{asset}"
        );
        let expected = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&r, "content-type"), expected, "{asset}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    }
    // A missing asset is a 404, not the shell parsed as JavaScript.
    let r = get("/_/assets/index-00000000.js").await.expect("request");
    assert_eq!(r.status(), 404);
    assert!(header(&r, "content-type").starts_with("application/json"));

    // Nothing outside the bundle is reachable.
    for path in [
        "/_/assets/..%2f..%2fCargo.toml",
        "/_/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/_/..%2fCargo.toml",
    ] {
        let r = get(path).await.expect("request");
        let body = r.text().await.expect("body");
        assert!(!body.contains("[workspace]"), "{path} leaked a file");
    }

    // Top-level files of the build, and the redirects into the dashboard.
    let r = get("/_/favicon.svg").await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/svg+xml");
    for path in ["/", "/_"] {
        let r = get(path).await.expect("request");
        assert_eq!(r.status(), 307, "{path}");
        assert_eq!(header(&r, "location"), "/_/", "{path}");
    }
    // The API is not swallowed by the fallback.
    let r = get("/api/v1/nope").await.expect("request");
    assert_eq!(r.status(), 404);
    assert!(header(&r, "content-type").starts_with("application/json"));
    app.shutdown().await;
}

/// Whether a missing tool must fail the test: in CI (`CI` or the PostgreSQL test URL
/// set) the browser test must run; on a developer machine it may skip.
fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("PICLOUD_TEST_DATABASE_URL").is_some()
}

fn missing_tool() -> Option<String> {
    let root = repo_root();
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !PathBuf::from(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if !root
        .join("dashboard/node_modules/playwright-core/package.json")
        .exists()
    {
        return Some("dashboard/node_modules is missing (npm ci --prefix dashboard)".into());
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_e2e_in_headless_chromium() {
    if let Some(reason) = missing_tool() {
        assert!(!required(), "the dashboard e2e test cannot run: {reason}");
        eprintln!("skipping the dashboard e2e test: {reason}");
        return;
    }
    // No bootstrapped admin: the browser does the first-run set-up.
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.admin_email = None;
        config.admin_password = None;
    })
    .await
    .expect("server");
    let token = app
        .started()
        .setup_token
        .clone()
        .expect("a fresh server prints a set-up token");
    let root = repo_root();
    let run = tokio::process::Command::new("node")
        .arg(root.join("dashboard/e2e/flow.mjs"))
        .env("PICLOUD_URL", &app.base)
        .env("PICLOUD_SETUP_TOKEN", token)
        // The screenshots linked from the README; PICLOUD_SCREENSHOT_DIR puts them elsewhere.
        .env(
            "SCREENSHOT_DIR",
            std::env::var_os("PICLOUD_SCREENSHOT_DIR")
                .map_or_else(|| root.join("docs/screenshots"), PathBuf::from),
        )
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser flow finishes within 5 minutes")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the dashboard flow failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("ok: the dashboard flow passed"), "{stdout}");
    app.shutdown().await;
}

/// The session cookie in the browser (`dashboard/e2e/cookies.mjs`): over plain HTTP
/// and over TLS (as a proxy reports it), Chromium keeps the cookie the server meant;
/// an app route on the dashboard's origin cannot change it; a planted one never wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_in_headless_chromium() {
    if let Some(reason) = missing_tool() {
        assert!(!required(), "the cookie e2e test cannot run: {reason}");
        eprintln!("skipping the cookie e2e test: {reason}");
        return;
    }
    let app = TestApp::start(Backend::Sqlite).await.expect("server");
    app.deploy(
        "shop",
        "GET",
        "/plant",
        r#"#{status: 200, headers: #{
            "set-cookie": "picloud_session=pcs_planted; Path=/api/v1",
            "clear-site-data": "\"cookies\"",
        }, body: "planted?"}"#,
    )
    .await;
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
    let run = tokio::process::Command::new("node")
        .arg(repo_root().join("dashboard/e2e/cookies.mjs"))
        .env("PICLOUD_URL", &app.base)
        .env("PICLOUD_PLANTED_TOKEN", planted)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser check finishes within 3 minutes")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the cookie check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("ok: the session cookie held"), "{stdout}");
    app.shutdown().await;
}
