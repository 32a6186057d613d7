//! Secrets end to end, on both databases: the script API with its types and errors,
//! the value cap, isolation and rights, the admin API (names only, the audited
//! reveal), ciphertext moved between rows, a restart under the wrong key, and a master
//! key rotation stopped half-way, resumed and verified while a server keeps serving.

use picloud::rotate::{self, RotateOptions, RotateOutcome};
use picloud_core::config::Config;
use picloud_core::crypto::SecretKey;
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
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            script["id"].as_str().unwrap_or_default()
        ),
        Some(json!({"method": "GET", "path": "/rw", "auth": "required"})),
        201,
    )
    .await;
    let key = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "reader", "scopes": ["script:read", "script:invoke"]})),
            201,
        )
        .await;
    let key = key["key"].as_str().expect("key");
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

/// A server on `app`'s database with these keys.
async fn start_on(
    app: &TestApp,
    key: &SecretKey,
    new_key: Option<&SecretKey>,
) -> Result<picloud::Started, picloud::StartError> {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::defaults();
    config.listen = ([127, 0, 0, 1], 0).into();
    config.data_dir = dir.path().to_path_buf();
    config.files_root = dir.path().join("files");
    config.database_url = Some(app.database_url().to_owned());
    config.secret_key = Some(key.clone());
    config.secrets.new_key = new_key.cloned();
    picloud::start(config).await
}

async fn restart_with_the_wrong_key_is_refused(backend: Backend) {
    let key = SecretKey::generate();
    let Some(mut app) = TestApp::start_with(backend, |c| c.secret_key = Some(key.clone())).await
    else {
        return;
    };
    app.create_app("shop").await;
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/secrets",
        Some(json!({"name": "s", "value": "v"})),
        201,
    )
    .await;
    app.stop().await;
    let wrong = SecretKey::generate();
    let refused = start_on(&app, &wrong, None).await;
    let Err(e) = refused else {
        unreachable!("a server started under the wrong key")
    };
    let line = e.to_string();
    assert!(
        line.contains("PICLOUD_SECRET_KEY") && line.contains("differs"),
        "{line}"
    );
    // The right key starts, and reads what was written.
    let again = start_on(&app, &key, None).await.expect("right key");
    let app_id = again
        .state
        .store
        .get_app_by_slug("shop")
        .await
        .expect("app")
        .id;
    let value = again
        .state
        .services
        .secrets
        .reveal(&app_id, "s")
        .await
        .expect("opens");
    assert_eq!(value, Some(json!("v")));
    again.shutdown().await.expect("stop");
}

async fn reveal(app: &TestApp, slug: &str, name: &str) -> (u16, Value) {
    let r = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/apps/{slug}/secrets/{name}/reveal"),
            None,
        )
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A rotation stopped after its first batch (as a crash would stop it) resumes,
/// verifies and flips; a server holding only the old key serves throughout; after
/// the flip the old key alone no longer starts, the new one does, and once the old
/// wrappings are forgotten the old key opens nothing.
async fn rotation_resumes_and_keeps_serving(backend: Backend) {
    let old = SecretKey::generate();
    let new = SecretKey::generate();
    let Some(mut app) = TestApp::start_with(backend, |c| c.secret_key = Some(old.clone())).await
    else {
        return;
    };
    let slugs = ["a-app", "b-app", "c-app"];
    for slug in slugs {
        app.create_app(slug).await;
        app.admin_ok(
            Method::POST,
            &format!("/api/v1/admin/apps/{slug}/secrets"),
            Some(json!({"name": "token", "value": {"slug": slug}})),
            201,
        )
        .await;
        app.deploy(slug, "POST", "/t", r#"secrets::get("token").slug"#)
            .await;
    }
    let store = app.started().state.store.clone();
    let stopped = rotate::rotate_key(
        store.as_ref(),
        &old,
        &new,
        RotateOptions {
            batch_size: 1,
            stop_after_batches: Some(1),
        },
    )
    .await
    .expect("first batch");
    assert_eq!(stopped, RotateOutcome::Stopped { rewrapped: 1 });
    // Half-way: the running server (old key only) reads and writes.
    for slug in slugs {
        assert_eq!(run(&app, slug, "/t").await, (200, json!(slug)));
    }
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/a-app/secrets",
        Some(json!({"name": "during", "value": 1})),
        201,
    )
    .await;
    // A wrong old key changes nothing.
    assert!(matches!(
        rotate::rotate_key(
            store.as_ref(),
            &SecretKey::generate(),
            &new,
            RotateOptions::default()
        )
        .await,
        Err(rotate::RotateError::WrongKey)
    ));
    let done = rotate::rotate_key(store.as_ref(), &old, &new, RotateOptions::default())
        .await
        .expect("resumed");
    assert_eq!(
        done,
        RotateOutcome::Done {
            rewrapped: 2,
            verified: 3
        }
    );
    // Run again: nothing left but the verify pass.
    assert_eq!(
        rotate::rotate_key(store.as_ref(), &old, &new, RotateOptions::default())
            .await
            .expect("again"),
        RotateOutcome::Done {
            rewrapped: 0,
            verified: 3
        }
    );
    // After the flip the old-key server still reads, through the old wrappings.
    for slug in slugs {
        assert_eq!(run(&app, slug, "/t").await, (200, json!(slug)));
    }
    assert_eq!(
        reveal(&app, "a-app", "during").await,
        (200, json!({"name": "during", "value": 1}))
    );
    app.stop().await;

    assert!(start_on(&app, &old, None).await.is_err(), "old key alone");
    // With both keys (the runbook's middle step), and with the new one alone.
    let both = start_on(&app, &old, Some(&new)).await.expect("both keys");
    both.shutdown().await.expect("stop");
    let server = start_on(&app, &new, None).await.expect("new key");
    let forgotten = rotate::forget_old(server.state.store.as_ref(), &new)
        .await
        .expect("forget");
    assert_eq!(forgotten, 3);
    for slug in slugs {
        let id = server
            .state
            .store
            .get_app_by_slug(slug)
            .await
            .expect("app")
            .id;
        assert_eq!(
            server
                .state
                .services
                .secrets
                .reveal(&id, "token")
                .await
                .expect("opens under the new key"),
            Some(json!({"slug": slug}))
        );
        // New data keys are made under the new key.
        server
            .state
            .services
            .secrets
            .put(&id, "after", &json!("x"))
            .await
            .expect("write");
    }
    server.shutdown().await.expect("stop");
    assert!(start_on(&app, &old, None).await.is_err());
}

picloud_testkit::backend_tests!(
    script_api_types_caps_and_errors => script_api,
    apps_are_isolated_and_readers_cannot_write => isolation_and_rights,
    admin_api_lists_names_and_reveals_audited => admin_api,
    moved_ciphertext_does_not_decrypt => moved_ciphertext_does_not_decrypt,
    restart_with_the_wrong_key_is_refused => restart_with_the_wrong_key_is_refused,
    rotation_resumes_and_keeps_serving => rotation_resumes_and_keeps_serving,
    rotate_key_command_survives_a_kill => rotate_key_command_survives_a_kill,
);

/// The real `picloud rotate-key`, killed (SIGKILL) while it re-wraps one data key per
/// batch, then run again: it finishes, and every secret opens under the new key.
async fn rotate_key_command_survives_a_kill(backend: Backend) {
    let old = SecretKey::generate();
    let new = SecretKey::generate();
    let Some(mut app) = TestApp::start_with(backend, |c| c.secret_key = Some(old.clone())).await
    else {
        return;
    };
    // Many apps, so many data keys: the kill lands in the middle of the re-wrap.
    let state = app.started().state.clone();
    let mut apps = Vec::new();
    for i in 0..200 {
        let created = state
            .store
            .create_app(picloud_store::NewApp {
                slug: format!("k{i}-app"),
                name: format!("k{i}"),
            })
            .await
            .expect("app");
        state
            .services
            .secrets
            .put(&created.id, "token", &json!(i))
            .await
            .expect("put");
        apps.push(created.id);
    }
    drop(state);
    app.stop().await;

    let command = |new_key: Option<&SecretKey>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_picloud"));
        cmd.args(["rotate-key", "--batch-size", "1"])
            .env_clear()
            .env("PICLOUD_DATABASE_URL", app.database_url())
            .env("PICLOUD_SECRET_KEY", old.to_base64())
            .env("PICLOUD_LOG", "warn");
        if let Some(k) = new_key {
            cmd.env("PICLOUD_NEW_SECRET_KEY", k.to_base64());
        }
        cmd
    };
    let missing = command(None).output().expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("PICLOUD_NEW_SECRET_KEY"));

    let mut child = command(Some(&new))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Killed as soon as its first batches landed: mid-way through the re-wrap.
    let mut config = Config::defaults();
    config.database_url = Some(app.database_url().to_owned());
    let store = picloud::open_store(&config).await.expect("store");
    let new_id = new.key_id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = store
            .data_keys_to_rewrap(&new_id, 500)
            .await
            .expect("read")
            .len();
        if left < 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let left = store
        .data_keys_to_rewrap(&new_id, 500)
        .await
        .expect("read")
        .len();
    let check = store
        .get_meta(picloud_store::secrets::KEY_CHECK_META)
        .await
        .expect("meta")
        .unwrap_or_default();
    // Killed before the flip (the usual case), or, on a very fast machine, after it:
    // either way the check value names exactly one of the keys.
    assert!(old.matches_check_value(&check) || new.matches_check_value(&check));
    if left > 0 {
        assert!(old.matches_check_value(&check), "flipped with keys left");
    }
    eprintln!("killed with {left} of 200 data keys still to re-wrap");
    store.close().await;

    let finished = command(Some(&new)).output().expect("run");
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert!(
        finished.status.success() && stdout.contains("rotated"),
        "{stdout} {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert!(stdout.contains("200 verified"), "{stdout}");

    assert!(start_on(&app, &old, None).await.is_err());
    let server = start_on(&app, &new, None).await.expect("new key");
    for (i, id) in apps.iter().enumerate() {
        assert_eq!(
            server
                .state
                .services
                .secrets
                .reveal(id, "token")
                .await
                .expect("opens"),
            Some(json!(i))
        );
    }
    server.shutdown().await.expect("stop");
}
