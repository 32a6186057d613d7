//! Hardening of identity, attacked over HTTP on both backends: the last instance admin
//! under concurrent requests, what a credential change ends, what a key may carry, and look-alike emails.

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

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.call_as(token, Method::GET, "/api/v1/auth/me", None)
        .await
        .status()
        .as_u16()
}

async fn patch_user(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    status(
        app.call_as(
            token,
            Method::PATCH,
            &format!("/api/v1/admin/users/{id}"),
            Some(body),
        )
        .await,
    )
    .await
}

async fn key_of(app: &TestApp, token: &str, name: &str) -> String {
    let (code, body) = status(
        app.call_as(
            token,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": name, "scopes": ["app:read"]})),
        )
        .await,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["key"].as_str().expect("key").to_owned()
}

/// A disable ends the user's sessions for good: enabling them again revives none.
/// A new password ends every session but the caller's own, and, when asked
/// (`revoke_api_keys`), every API key too.
async fn credential_changes_end_sessions(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let (dev_id, dev) = user(&app, "dev@example.com", false).await;
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/shop/members/{dev_id}"),
        Some(json!({"role": "viewer"})),
        200,
    )
    .await;
    let key = key_of(&app, &dev, "ci").await;
    assert_eq!(me_status(&app, &dev).await, 200);

    // Disabled: nothing of theirs works.
    let (code, _) = patch_user(&app, &app.admin_token, &dev_id, json!({"disabled": true})).await;
    assert_eq!(code, 200);
    assert_eq!(me_status(&app, &dev).await, 401);
    assert_eq!(me_status(&app, &key).await, 401);
    // Enabled again: the old session stays dead; the key (a credential of its own,
    // revoked only on request) works again, and a fresh login works.
    let (code, body) =
        patch_user(&app, &app.admin_token, &dev_id, json!({"disabled": false})).await;
    assert_eq!((code, body["disabled"].as_bool()), (200, Some(false)));
    assert_eq!(
        me_status(&app, &dev).await,
        401,
        "a session issued before the disable came back with the re-enable"
    );
    assert_eq!(me_status(&app, &key).await, 200);
    let dev = app.login("dev@example.com", "password123").await;
    assert_eq!(me_status(&app, &dev).await, 200);

    // A new password set by an admin: the user's sessions end, their keys stay unless
    // the admin asks (the dashboard asks by default).
    let (code, _) = patch_user(
        &app,
        &app.admin_token,
        &dev_id,
        json!({"password": "new password 1"}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(me_status(&app, &dev).await, 401);
    assert_eq!(me_status(&app, &key).await, 200);
    let dev = app.login("dev@example.com", "new password 1").await;
    let second_key = key_of(&app, &dev, "second").await;
    let (code, _) = patch_user(
        &app,
        &app.admin_token,
        &dev_id,
        json!({"password": "new password 2", "revoke_api_keys": true}),
    )
    .await;
    assert_eq!(code, 200);
    for token in [&dev, &key, &second_key] {
        assert_eq!(me_status(&app, token).await, 401);
    }
    let keys = app
        .admin_ok(
            Method::GET,
            &format!("/api/v1/admin/api-keys?user_id={dev_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(keys["items"], json!([]), "revoked keys are deleted");
    // The option on its own (with a disable, say) revokes the keys as well.
    let dev = app.login("dev@example.com", "new password 2").await;
    let third_key = key_of(&app, &dev, "third").await;
    patch_user(
        &app,
        &app.admin_token,
        &dev_id,
        json!({"disabled": true, "revoke_api_keys": true}),
    )
    .await;
    patch_user(&app, &app.admin_token, &dev_id, json!({"disabled": false})).await;
    assert_eq!(me_status(&app, &third_key).await, 401);
    let (code, body) = patch_user(
        &app,
        &app.admin_token,
        &dev_id,
        json!({"revoke_api_keys": "yes"}),
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (422, Some("invalid")),
        "{body}"
    );

    // Changing your own password keeps the session you changed it with, and ends your
    // others (a stolen token among them).
    let elsewhere = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let me = my_id(&app, &app.admin_token).await;
    let (code, _) = patch_user(
        &app,
        &app.admin_token,
        &me,
        json!({"password": "admin password 2"}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(me_status(&app, &app.admin_token).await, 200);
    assert_eq!(me_status(&app, &elsewhere).await, 401);
    let again = app.login(ADMIN_EMAIL, "admin password 2").await;
    assert_eq!(me_status(&app, &again).await, 200);
    // An API key changing its owner's password keeps no session: it has none.
    app.shutdown().await;
}

async fn new_key(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.call_as(token, Method::POST, "/api/v1/admin/api-keys", Some(body))
        .await
}

/// A key may carry only scopes its owner holds when it is made: on its app when it
/// names one, on some app otherwise; instance scopes only for instance admins.
async fn keys_within_the_owners_rights(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    app.create_app("other").await;
    let (dev_id, dev) = user(&app, "dev@example.com", false).await;
    let (_, nobody) = user(&app, "nobody@example.com", false).await;
    for (slug, role) in [("shop", "viewer"), ("other", "editor")] {
        app.admin_ok(
            Method::PUT,
            &format!("/api/v1/admin/apps/{slug}/members/{dev_id}"),
            Some(json!({"role": role})),
            200,
        )
        .await;
    }
    for (token, body, missing) in [
        // Beyond every role the owner has.
        (
            &dev,
            json!({"name": "k", "scopes": ["app:admin"]}),
            "app:admin",
        ),
        (
            &dev,
            json!({"name": "k", "scopes": ["app:read", "user:admin"]}),
            "user:admin",
        ),
        (
            &dev,
            json!({"name": "k", "scopes": ["instance:admin"]}),
            "instance:admin",
        ),
        // Held on another app, not on the one the key is for.
        (
            &dev,
            json!({"name": "k", "scopes": ["script:write"], "app_id": "shop"}),
            "script:write",
        ),
        // A user without a role holds nothing to give.
        (
            &nobody,
            json!({"name": "k", "scopes": ["app:read"]}),
            "app:read",
        ),
    ] {
        let (code, err) = status(new_key(&app, token, body.clone()).await).await;
        assert_eq!(
            (
                code,
                err["error"]["code"].as_str(),
                err["error"]["field"].as_str()
            ),
            (422, Some("invalid"), Some("scopes")),
            "{body}: {err}"
        );
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(missing), "{body}: {message}");
    }
    // Within the owner's rights: created.
    for body in [
        json!({"name": "k", "scopes": ["script:write"]}),
        json!({"name": "k", "scopes": ["script:write"], "app_id": "other"}),
        json!({"name": "k", "scopes": ["app:read", "script:invoke"], "app_id": "shop"}),
    ] {
        let (code, b) = status(new_key(&app, &dev, body.clone()).await).await;
        assert_eq!(code, 201, "{body}: {b}");
    }
    // Instance admins hold every scope, on every app.
    for body in [
        json!({"name": "k", "scopes": ["instance:admin", "user:admin"]}),
        json!({"name": "k", "scopes": ["app:admin"], "app_id": "shop"}),
    ] {
        let (code, b) = status(new_key(&app, &app.admin_token, body.clone()).await).await;
        assert_eq!(code, 201, "{body}: {b}");
    }
    app.shutdown().await;
}

/// Addresses that look like another one are refused wherever a user is made: letters
/// of two scripts in one part, punycode hiding them, a whole part of look-alikes of
/// ASCII letters, invisible characters. Honest international addresses pass.
async fn look_alike_emails(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let create = |email: &str| {
        app.admin(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": email, "password": "password123"})),
        )
    };
    for bad in [
        "\u{430}dmin@example.com",                // Cyrillic а among Latin letters
        "admin@ex\u{430}mple.com",                // ...in the domain
        "admin@xn--exmple-4nf.com",               // ...hidden in punycode
        "admin@xn--zz-invalid-.com",              // not punycode at all
        "ad\u{200b}min@example.com",              // zero-width space
        "admin@example.c\u{43e}m",                // Cyrillic о in the top-level domain
        "p\u{3bf}stmaster@example.com",           // Greek ο among Latin letters
        "admin@\u{441}\u{43e}\u{441}\u{43e}.com", // all-Cyrillic "coco": an ASCII look-alike
        "adm\u{131}n@example.com",                // Latin dotless ı: "admin" to the eye
        "admin@xn--n1aahb.com",                   // the same "coco", as punycode
        "\u{ff41}dmin@example.com",               // fullwidth ａ
        "a@b@example.com",
    ] {
        let (code, body) = status(create(bad).await).await;
        assert_eq!(
            (
                code,
                body["error"]["code"].as_str(),
                body["error"]["field"].as_str()
            ),
            (422, Some("invalid"), Some("email")),
            "{bad:?}: {body}"
        );
    }
    for good in [
        "jos\u{e9}@example.com",                               // é, Latin
        "\u{438}\u{432}\u{430}\u{43d}@example.com",            // иван, all Cyrillic
        "user@\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.com", // пример.com, an IDN
        "user@xn--e1afmkfd.com",                               // the same, as punycode
        "\u{7530}\u{4e2d}taro@example.jp", // 田中taro: Han with Latin is allowed
        "first.last+tag@sub.example.com",
    ] {
        let (code, body) = status(create(good).await).await;
        assert_eq!(code, 201, "{good:?}: {body}");
    }
    // A decomposed é is stored composed: one address, one account.
    let (code, body) = status(create("jose\u{301}@example.com").await).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    // And signs in to that account, written either way (or with stray case and space).
    for typed in ["jose\u{301}@example.com", " JOS\u{c9}@Example.com "] {
        let token = app.login(typed, "password123").await;
        assert!(!token.is_empty(), "{typed:?}");
    }
    app.shutdown().await;
}

/// A key with `user:admin` alone manages users, not instance admins: with its owner an
/// instance admin, such a key made new admins and took over the admin's password.
async fn user_admin_keys_cannot_make_admins(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let admin = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_id = my_id(&app, &admin).await;
    let key: Value = app
        .call_as(
            &admin,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "users only", "scopes": ["user:admin"]})),
        )
        .await
        .json()
        .await
        .expect("key");
    let key = key["key"].as_str().expect("key").to_owned();
    let (bob_id, _) = user(&app, "bob@example.com", false).await;
    let (other_admin, _) = user(&app, "admin2@example.com", true).await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/admin/users".to_owned(),
            json!({"email": "mint@example.com", "password": "password123", "is_admin": true}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{bob_id}"),
            json!({"is_admin": true}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{admin_id}"),
            json!({"password": "taken over 1"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{other_admin}"),
            json!({"disabled": true}),
        ),
    ] {
        let r = app.call_as(&key, method.clone(), &path, Some(body)).await;
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    let r = app
        .call_as(
            &key,
            Method::DELETE,
            &format!("/api/v1/admin/users/{other_admin}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 403);
    // What `user:admin` is for still works.
    let r = app
        .call_as(
            &key,
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": "carol@example.com", "password": "password123"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .call_as(
            &key,
            Method::PATCH,
            &format!("/api/v1/admin/users/{bob_id}"),
            Some(json!({"password": "new password 9", "is_admin": false})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(!app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.is_empty());
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    user_admin_keys_cannot_make_admins => user_admin_keys_cannot_make_admins,
    last_admin_survives_concurrent_requests => last_admin_under_concurrency,
    credential_changes_end_sessions_for_good => credential_changes_end_sessions,
    keys_carry_only_scopes_their_owner_holds => keys_within_the_owners_rights,
    look_alike_emails_are_refused => look_alike_emails,
);
