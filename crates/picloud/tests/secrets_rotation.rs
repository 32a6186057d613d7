//! The master key end to end, on both databases: a restart under the wrong key is
//! refused; a rotation stopped after one batch resumes, verifies and flips while a
//! server holding only the old key keeps serving; the real `picloud rotate-key`
//! killed mid-way finishes when run again.

use picloud::rotate::{self, RotateOptions, RotateOutcome};
use picloud_core::config::Config;
use picloud_core::crypto::SecretKey;
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

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

picloud_testkit::backend_tests!(
    restart_with_the_wrong_key_is_refused => restart_with_the_wrong_key_is_refused,
    rotation_resumes_and_keeps_serving => rotation_resumes_and_keeps_serving,
    rotate_key_command_survives_a_kill => rotate_key_command_survives_a_kill,
);
