//! Login throttling must slow a guesser down without letting anyone lock an account:
//! failures count per (account, client address), so wrong passwords from elsewhere
//! never keep the real user out. Behind a proxy the client address comes from
//! `X-Forwarded-For`, believed only from `PICLOUD_TRUSTED_PROXIES`.

use picloud_testkit::app::{ADMIN_EMAIL, ADMIN_PASSWORD};
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn attempt(app: &TestApp, forwarded_for: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": ADMIN_EMAIL, "password": password}))
        .send()
        .await
        .expect("login request")
}

async fn status(app: &TestApp, forwarded_for: &str, password: &str) -> u16 {
    attempt(app, forwarded_for, password)
        .await
        .status()
        .as_u16()
}

async fn many_addresses_cannot_lock_an_account_out(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("range")];
    })
    .await
    .expect("server");
    // Wrong passwords from a dozen addresses: none of them is throttled yet, and the
    // account is not locked for anyone.
    for i in 1..=12 {
        assert_eq!(
            status(&app, &format!("203.0.113.{i}"), "wrong password").await,
            401,
            "address {i}"
        );
    }
    assert_eq!(
        status(&app, "198.51.100.7", ADMIN_PASSWORD).await,
        200,
        "the admin signs in from their own address"
    );

    // One address guessing is throttled, and only that address.
    let guesser = "203.0.113.200";
    for i in 0..10 {
        assert_eq!(
            status(&app, guesser, "wrong password").await,
            401,
            "try {i}"
        );
    }
    let r = attempt(&app, guesser, "wrong password").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(status(&app, guesser, ADMIN_PASSWORD).await, 429);
    // A forged entry in front of the proxy's own does not change who is asking: the
    // right-most address the trusted proxy did not vouch for is the client.
    assert_eq!(
        status(&app, &format!("192.0.2.1, {guesser}"), ADMIN_PASSWORD).await,
        429
    );
    assert_eq!(status(&app, "198.51.100.8", ADMIN_PASSWORD).await, 200);

    // The audit log records the same client address.
    let token = attempt(&app, "198.51.100.9", ADMIN_PASSWORD)
        .await
        .json::<Value>()
        .await
        .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = app
        .client
        .post(app.url("/api/v1/admin/apps"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "192.0.2.50, 198.51.100.9")
        .json(&json!({"slug": "shop"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 201);
    let audit = app
        .admin_ok(Method::GET, "/api/v1/admin/audit", None, 200)
        .await;
    let entry = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "POST /api/v1/admin/apps")
        .expect("audited")
        .clone();
    assert_eq!(entry["ip"], "198.51.100.9", "{entry}");
    app.shutdown().await;
}

async fn forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    for i in 0..10 {
        assert_eq!(
            status(&app, &format!("203.0.113.{i}"), "wrong password").await,
            401
        );
    }
    // Every one of those came from 127.0.0.1, whatever the header claimed.
    assert_eq!(status(&app, "203.0.113.99", "wrong password").await, 429);
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    failures_from_many_addresses_never_lock_the_account => many_addresses_cannot_lock_an_account_out,
    forwarded_for_is_believed_only_from_trusted_proxies => forwarded_for_from_an_untrusted_peer_is_ignored,
);
