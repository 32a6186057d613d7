//! Secrets end to end, on both databases: the script API with its types and errors,
//! the value cap, isolation and rights, the admin API (names only, the audited
//! reveal), and ciphertext moved between rows. The master key (wrong key at restart,
//! rotation) is in `secrets_rotation.rs`.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// A value no answer, record, log or audit entry may ever contain.
const MARK: &str = "TOPSECRET-7f3a";

async fn run(app: &TestApp, slug: &str, path: &str) -> (u16, Value) {
    let r = app
        .on_host(slug, Method::POST, path)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const TOUR: &str = r#"
    let errors = [];
    let big = "TOPSECRET-7f3a";
    for i in 0..30 { big += "xxxxxxxxxx"; }
    secrets::set("STRIPE_KEY", "sk_live_1");
    secrets::set("smtp", #{host: "mail", port: 587, tls: true});
    secrets::set("hosts", ["a", "b", 3]);
    secrets::set("n", 42);
    let first = secrets::get("STRIPE_KEY");
    secrets::set("STRIPE_KEY", "sk_live_2");
    for bad in [["1bad", "x"], ["a b", "x"], ["ok", ()], ["big", big]] {
        try { secrets::set(bad[0], bad[1]); errors.push("accepted"); } catch (e) { errors.push(e); }
    }
    try { secrets::set("f", || 1); errors.push("accepted"); } catch (e) { errors.push(e); }
    #{
        first: first, string: secrets::get("STRIPE_KEY"), map: secrets::get("smtp"),
        array: secrets::get("hosts"), int: secrets::get("n"), missing: secrets::get("nope"),
        list: secrets::list(), deleted: secrets::delete("n"), deleted_again: secrets::delete("n"),
        after: secrets::list(), errors: errors,
    }
"#;

async fn script_api(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |c| c.secrets.max_value_bytes = 200).await else {
        return;
    };
    app.deploy("shop", "POST", "/tour", TOUR).await;
    let (status, out) = run(&app, "shop", "/tour").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["first"], "sk_live_1");
    assert_eq!(out["string"], "sk_live_2");
    assert_eq!(
        out["map"],
        json!({"host": "mail", "port": 587, "tls": true})
    );
    assert_eq!(out["array"], json!(["a", "b", 3]));
    assert_eq!(out["int"], 42);
    assert_eq!(out["missing"], Value::Null);
    assert_eq!(out["list"], json!(["STRIPE_KEY", "hosts", "n", "smtp"]));
    assert_eq!(out["deleted"], true);
    assert_eq!(out["deleted_again"], false);
    assert_eq!(out["after"], json!(["STRIPE_KEY", "hosts", "smtp"]));
    let errors: Vec<String> = out["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(errors.len(), 5, "{errors:?}");
    for e in &errors {
        assert!(e.starts_with("secrets: "), "{e}");
        assert!(!e.contains(MARK), "an error echoes the value: {e}");
    }
    assert!(errors[0].contains("invalid secret name"), "{}", errors[0]);
    assert!(errors[2].contains("null"), "{}", errors[2]);
    assert!(
        errors[3].contains("PICLOUD_SECRET_MAX_VALUE_BYTES"),
        "{}",
        errors[3]
    );

    // An uncaught refusal ends the run; neither the answer nor the record shows the
    // value. (A script that logs a secret is its own business; this one does not.)
    app.deploy(
        "shop",
        "POST",
        "/leak",
        r#"let big = "TOPSECRET-7f3a";
           for i in 0..30 { big += "yyyyyyyyyy"; }
           secrets::set("big", big)"#,
    )
    .await;
    let (status, out) = run(&app, "shop", "/leak").await;
    assert_eq!(status, 500);
    assert!(!out.to_string().contains(MARK), "{out}");
    let records = app.executions("shop", 2).await;
    assert!(!serde_json::to_string(&records)
        .expect("json")
        .contains(MARK));
    app.shutdown().await;
}

async fn isolation_and_rights(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    app.deploy(
        "one",
        "POST",
        "/set",
        r#"secrets::set("token", "one's"); "ok""#,
    )
    .await;
    app.deploy(
        "two",
        "POST",
        "/peek",
        r#"#{token: secrets::get("token"), list: secrets::list()}"#,
    )
    .await;
    assert_eq!(run(&app, "one", "/set").await.0, 200);
    let (status, out) = run(&app, "two", "/peek").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out, json!({"token": null, "list": []}));

    // A caller with script:read reads through a required-auth route; writing is 403.
    let script = app
        .create_script(
            "one",
            "rw",
            r#"if ctx.request.query.write == "1" { secrets::set("token", "x"); }
               secrets::get("token")"#,
        )
        .await;
    app.required_route(&script, "GET", "/rw").await;
    let key = app.api_key(&["script:read", "script:invoke"]).await;
    let key = key.as_str();
    let r = app
        .on_host("one", Method::GET, "/rw")
        .bearer_auth(key)
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "one's");
    let r = app
        .on_host("one", Method::GET, "/rw?write=1")
        .bearer_auth(key)
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 403);
    app.shutdown().await;
}

async fn admin_api(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    app.create_app("shop").await;
    let base = "/api/v1/admin/apps/shop/secrets";
    let value = json!({"user": "svc", "password": MARK});
    let created = app
        .admin_ok(
            Method::POST,
            base,
            Some(json!({"name": "db", "value": value})),
            201,
        )
        .await;
    assert_eq!(created["name"], "db");
    assert!(!created.to_string().contains(MARK));
    app.admin_ok(
        Method::POST,
        base,
        Some(json!({"name": "db", "value": value})),
        200,
    )
    .await;
    app.admin_ok(
        Method::POST,
        base,
        Some(json!({"name": "api", "value": "k"})),
        201,
    )
    .await;
    let list = app.admin_ok(Method::GET, base, None, 200).await;
    assert!(!list.to_string().contains(MARK), "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    for item in items {
        let mut keys: Vec<_> = item.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["name", "updated_at"]);
    }
    assert_eq!(items[0]["name"], "api");

    // A script sees what the admin stored, with its type.
    app.deploy("shop", "POST", "/db", r#"secrets::get("db").user"#)
        .await;
    assert_eq!(run(&app, "shop", "/db").await, (200, json!("svc")));

    // The reveal: the value, uncached, and an audit entry without it.
    let r = app
        .admin(Method::POST, &format!("{base}/db/reveal"), None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let revealed: Value = r.json().await.expect("json");
    assert_eq!(revealed, json!({"name": "db", "value": value}));
    let audit = app
        .admin_ok(Method::GET, "/api/v1/admin/audit?app=shop", None, 200)
        .await;
    assert!(!audit.to_string().contains(MARK), "{audit}");
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(
                |e| e["action"] == "POST /api/v1/admin/apps/{app}/secrets/{name}/reveal"
                    && e["target"] == "/api/v1/admin/apps/shop/secrets/db/reveal"
            ),
        "{audit}"
    );
    app.admin_ok(Method::POST, &format!("{base}/nope/reveal"), None, 404)
        .await;

    // Refusals name the rule, never the value.
    let r = app
        .admin(
            Method::POST,
            base,
            Some(json!({"name": "big", "value": MARK.repeat(10_000)})),
        )
        .await;
    assert_eq!(r.status(), 413);
    assert!(!r.text().await.expect("body").contains(MARK));
    let r = app
        .admin(
            Method::POST,
            base,
            Some(json!({"name": "no good", "value": MARK})),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(!r.text().await.expect("body").contains(MARK));

    app.admin_ok(Method::DELETE, &format!("{base}/db"), None, 204)
        .await;
    app.admin_ok(Method::DELETE, &format!("{base}/db"), None, 404)
        .await;
    // Deleting the app takes its secrets.
    app.admin_ok(Method::DELETE, "/api/v1/admin/apps/shop", None, 204)
        .await;
    app.create_app("shop").await;
    let list = app.admin_ok(Method::GET, base, None, 200).await;
    assert_eq!(list["items"], json!([]));
    app.shutdown().await;
}

/// Sealed bytes copied onto another row (another name, another app) do not open: the
/// associated data binds them to their owner.
async fn moved_ciphertext_does_not_decrypt(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    app.create_app("one").await;
    app.create_app("two").await;
    for (slug, value) in [("one", MARK), ("two", "harmless")] {
        app.admin_ok(
            Method::POST,
            &format!("/api/v1/admin/apps/{slug}/secrets"),
            Some(json!({"name": "token", "value": value})),
            201,
        )
        .await;
    }
    let store = app.started().state.store.clone();
    let one = store.get_app_by_slug("one").await.expect("app").id;
    let two = store.get_app_by_slug("two").await.expect("app").id;
    let stolen = store
        .secret_get(&one, "token")
        .await
        .expect("get")
        .expect("row");
    // Onto another app's row, and onto another name in the same app.
    store
        .secret_put(&two, "token", &stolen.sealed, &stolen.data_key_id)
        .await
        .expect("copied");
    store
        .secret_put(&one, "other", &stolen.sealed, &stolen.data_key_id)
        .await
        .expect("copied");
    for (slug, name) in [("two", "token"), ("one", "other")] {
        let r = app
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{slug}/secrets/{name}/reveal"),
                None,
            )
            .await;
        assert_eq!(r.status(), 500);
        let text = r.text().await.expect("body");
        assert!(!text.contains(MARK), "{text}");
        assert!(text.contains("\"internal\""), "{text}");
    }
    app.deploy(
        "two",
        "POST",
        "/get",
        r#"let out = "opened"; try { secrets::get("token"); } catch (e) { out = e; } out"#,
    )
    .await;
    let (status, out) = run(&app, "two", "/get").await;
    assert_eq!(status, 200);
    assert!(
        out.as_str().unwrap_or_default().starts_with("secrets: "),
        "{out}"
    );
    assert!(!out.to_string().contains(MARK));
    // The original still opens.
    let revealed = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps/one/secrets/token/reveal",
            None,
            200,
        )
        .await;
    assert_eq!(revealed["value"], MARK);
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    script_api_types_caps_and_errors => script_api,
    apps_are_isolated_and_readers_cannot_write => isolation_and_rights,
    admin_api_lists_names_and_reveals_audited => admin_api,
    moved_ciphertext_does_not_decrypt => moved_ciphertext_does_not_decrypt,
);
