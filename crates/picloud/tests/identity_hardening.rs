//! Hardening of identity, attacked over HTTP on both backends: the last instance admin
//! under concurrent requests.

use picloud_testkit::app::{ADMIN_EMAIL, ADMIN_PASSWORD};
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn status(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn user(app: &TestApp, email: &str, is_admin: bool) -> (String, String) {
    let u = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": email, "password": "password123", "is_admin": is_admin})),
            201,
        )
        .await;
    (
        u["id"].as_str().expect("id").to_owned(),
        app.login(email, "password123").await,
    )
}

async fn my_id(app: &TestApp, token: &str) -> String {
    let me: Value = app
        .call_as(token, Method::GET, "/api/v1/auth/me", None)
        .await
        .json()
        .await
        .expect("me");
    me["id"].as_str().expect("id").to_owned()
}

async fn enabled_admins(app: &TestApp) -> usize {
    app.started()
        .state
        .store
        .list_users(&picloud_store::PageRequest::first(500))
        .await
        .expect("users")
        .items
        .iter()
        .filter(|u| u.is_admin && !u.disabled)
        .count()
}

/// The loser of a race against a change that already took the caller's own rights may
/// also be refused before it reaches the rule (401, 403); what matters is that exactly
/// one change wins, a 409 names the rule, and an enabled admin is left.
fn one_wins(round: &str, a: (u16, Value), b: (u16, Value)) {
    let (winner, loser) = match (a.0, b.0) {
        (200 | 204, _) => (a, b),
        _ => (b, a),
    };
    assert!(
        matches!(winner.0, 200 | 204) && matches!(loser.0, 401 | 403 | 409),
        "{round}: exactly one change may win: {winner:?} {loser:?}"
    );
    if loser.0 == 409 {
        assert_eq!(loser.1["error"]["code"], "conflict");
        assert!(
            loser.1["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("last enabled instance admin")),
            "{}",
            loser.1
        );
    }
}

/// Two admins, each removed by one of two requests sent at the same moment: one wins,
/// the other is answered 409 `conflict`, and an enabled admin is always left.
async fn last_admin_under_concurrency(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let first = my_id(&app, &app.admin_token).await;
    let (second, _) = user(&app, "second@example.com", true).await;
    let store = app.started().state.store.clone();
    let bodies = [
        (json!({"is_admin": false}), json!({"is_admin": false})),
        (json!({"disabled": true}), json!({"is_admin": false})),
        (json!({"disabled": true}), json!({"disabled": true})),
    ];
    let mut conflicts = 0;
    for (body_a, body_b) in bodies {
        for round in 0..5 {
            let a_token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
            let b_token = app.login("second@example.com", "password123").await;
            // Each admin removes the other: both are signed in when the race starts.
            let (path_a, path_b) = (
                format!("/api/v1/admin/users/{first}"),
                format!("/api/v1/admin/users/{second}"),
            );
            let (ra, rb) = tokio::join!(
                app.call_as(&b_token, Method::PATCH, &path_a, Some(body_a.clone())),
                app.call_as(&a_token, Method::PATCH, &path_b, Some(body_b.clone())),
            );
            let (a, b) = (status(ra).await, status(rb).await);
            conflicts += usize::from(a.0 == 409 || b.0 == 409);
            one_wins(&format!("{body_a} {body_b} #{round}"), a, b);
            assert_eq!(enabled_admins(&app).await, 1);
            // Put both back (through the store: the API may have no admin session left).
            for id in [&first, &second] {
                let id = picloud_core::UserId::parse(id).expect("id");
                store
                    .update_user(
                        &id,
                        picloud_store::UserPatch {
                            is_admin: Some(true),
                            disabled: Some(false),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("restore");
            }
        }
    }
    // Two deletions at once: each admin deletes the other.
    let a_token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let b_token = app.login("second@example.com", "password123").await;
    let (path_a, path_b) = (
        format!("/api/v1/admin/users/{first}"),
        format!("/api/v1/admin/users/{second}"),
    );
    let (ra, rb) = tokio::join!(
        app.call_as(&a_token, Method::DELETE, &path_b, None),
        app.call_as(&b_token, Method::DELETE, &path_a, None),
    );
    one_wins("delete/delete", status(ra).await, status(rb).await);
    assert_eq!(enabled_admins(&app).await, 1);
    // Sequentially, the rule answers every time.
    let last = match store
        .get_user(&picloud_core::UserId::parse(&first).expect("id"))
        .await
    {
        Ok(_) => (first.clone(), app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await),
        Err(_) => (
            second.clone(),
            app.login("second@example.com", "password123").await,
        ),
    };
    for (method, body) in [
        (Method::PATCH, Some(json!({"is_admin": false}))),
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::DELETE, None),
    ] {
        let (code, body) = status(
            app.call_as(
                &last.1,
                method,
                &format!("/api/v1/admin/users/{}", last.0),
                body,
            )
            .await,
        )
        .await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (409, Some("conflict"))
        );
    }
    eprintln!("{conflicts} of 15 races reached the rule itself");
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    last_admin_survives_concurrent_requests => last_admin_under_concurrency,
);
