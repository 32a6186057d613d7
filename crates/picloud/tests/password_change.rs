//! Users changing their own password: the current password is required (a session
//! left open is not enough), API keys cannot do it, other sessions end, and the
//! user's keys go too when asked.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const PATH: &str = "/api/v1/auth/password";

async fn call(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let r = app.call_as(token, Method::POST, PATH, Some(body)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The user every case changes the password of: `dev@example.com`, `password123`.
async fn dev_user(app: &TestApp) -> Value {
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/users",
        Some(json!({"email": "dev@example.com", "password": "password123"})),
        201,
    )
    .await
}

async fn me(app: &TestApp, token: &str) -> u16 {
    app.call_as(token, Method::GET, "/api/v1/auth/me", None)
        .await
        .status()
        .as_u16()
}

async fn own_password_change(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let user = dev_user(&app).await;
    app.create_app("shop").await;
    app.admin_ok(
        Method::PUT,
        &format!(
            "/api/v1/admin/apps/shop/members/{}",
            user["id"].as_str().expect("id")
        ),
        Some(json!({"role": "viewer"})),
        200,
    )
    .await;
    let here = app.login("dev@example.com", "password123").await;
    let elsewhere = app.login("dev@example.com", "password123").await;
    let r = app
        .call_as(
            &here,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "ci", "scopes": ["app:read"]})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let key: Value = r.json().await.expect("key");
    let key = key["key"].as_str().expect("key").to_owned();

    // A key cannot become the account's password.
    let (code, body) = call(
        &app,
        &key,
        json!({"current_password": "password123", "new_password": "taken-over-1"}),
    )
    .await;
    assert_eq!(code, 403, "{body}");

    // The current password is required, and wrong guesses are throttled like logins.
    let (code, body) = call(
        &app,
        &here,
        json!({"current_password": "not-it-at-all", "new_password": "new-password-1"}),
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let (code, body) = call(&app, &here, json!({"new_password": "new-password-1"})).await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("current_password")),
        "{body}"
    );

    // A bad new password changes nothing.
    let (code, body) = call(
        &app,
        &here,
        json!({"current_password": "password123", "new_password": "short"}),
    )
    .await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("new_password")),
        "{body}"
    );
    assert_eq!(me(&app, &elsewhere).await, 200, "nothing changed yet");

    let (code, body) = call(
        &app,
        &here,
        json!({"current_password": "password123", "new_password": "new-password-1",
               "revoke_api_keys": true}),
    )
    .await;
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        me(&app, &here).await,
        200,
        "the session that changed it stays"
    );
    assert_eq!(me(&app, &elsewhere).await, 401, "every other session ends");
    assert_eq!(me(&app, &key).await, 401, "the keys went with it");
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "dev@example.com", "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401, "the old password no longer works");
    app.login("dev@example.com", "new-password-1").await;
    app.shutdown().await;
}

async fn wrong_current_passwords_are_throttled(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    dev_user(&app).await;
    let token = app.login("dev@example.com", "password123").await;
    let mut throttled = false;
    for _ in 0..30 {
        let (code, _) = call(
            &app,
            &token,
            json!({"current_password": "guess-guess", "new_password": "new-password-1"}),
        )
        .await;
        if code == 429 {
            throttled = true;
            break;
        }
        assert_eq!(code, 403);
    }
    assert!(throttled, "guessing the current password is throttled");
    app.shutdown().await;
}

/// Two sessions changing the password at the same moment: one wins, the other is
/// refused (before the fix both got 204 and both sessions ended), and the winner's
/// session stays.
async fn racing_changes_have_one_winner(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    dev_user(&app).await;
    for round in 0..3 {
        let old = if round == 0 {
            "password123".to_owned()
        } else {
            format!("winner-password-{}", round - 1)
        };
        let one = app.login("dev@example.com", &old).await;
        let two = app.login("dev@example.com", &old).await;
        let ((a, body_a), (b, body_b)) = tokio::join!(
            call(
                &app,
                &one,
                json!({"current_password": old, "new_password": format!("one-password-{round}")}),
            ),
            call(
                &app,
                &two,
                json!({"current_password": old, "new_password": format!("two-password-{round}")}),
            ),
        );
        // The loser is refused: 409 when both checked the old password before either
        // wrote (the race), 401 when the winner's write ended its session first.
        let mut codes = [a, b];
        codes.sort_unstable();
        assert!(
            codes[0] == 204 && [401, 409].contains(&codes[1]),
            "round {round}: {a} {body_a} / {b} {body_b}"
        );
        let (winner, password) = if a == 204 {
            (&one, format!("one-password-{round}"))
        } else {
            (&two, format!("two-password-{round}"))
        };
        assert_eq!(me(&app, winner).await, 200, "the winner's session stays");
        // Set a known password for the next round, from the winner's session.
        let (code, body) = call(
            &app,
            winner,
            json!({"current_password": password,
                   "new_password": format!("winner-password-{round}")}),
        )
        .await;
        assert_eq!(code, 204, "{body}");
    }
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    racing_password_changes_have_one_winner => racing_changes_have_one_winner,
    users_change_their_own_password => own_password_change,
    guessing_the_current_password_is_throttled => wrong_current_passwords_are_throttled,
);
