//! Files end to end, on both databases (and the S3 blob store): the script API and
//! its errors, files triggers, the admin API with the headers of "Serving user bytes",
//! the size cap while streaming, corruption, the orphan sweeper, isolation and rights.

use std::time::Duration;

use picloud_testkit::s3::Moto;
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

const TOUR: &str = r#"
    let avatars = files::collection("avatars");
    let a = avatars.create(#{name: "me.png", content_type: "image/png", data: blob(3, 7)});
    let b = avatars.create(#{name: "note.txt", content_type: "text/plain", data: "hello"});
    let empty = avatars.create(#{name: "empty", content_type: "text/plain", data: blob()});
    let got = avatars.get(a.id);
    let head = avatars.head(b.id);
    let renamed = avatars.update(b.id, #{name: "note2.txt", data: "hello, world"});
    let page1 = avatars.list(#{limit: 2});
    let page2 = avatars.list(#{limit: 2, cursor: page1.cursor});
    let errors = [];
    for bad in [#{content_type: "text/plain", data: "x"}, #{name: "x", data: "x"},
                #{name: "x", content_type: "text/plain"}, #{name: "x", content_type: "nope", data: "x"},
                #{name: "x", content_type: "text/plain", data: "x", path: "/etc/passwd"},
                #{name: "", content_type: "text/plain", data: "x"}] {
        try { avatars.create(bad); errors.push("accepted"); } catch (e) { errors.push(e); }
    }
    try { avatars.update("fil_01m8dm7ykee6t6nacm7pa7s3t7", #{name: "y"}); errors.push("accepted"); }
    catch (e) { errors.push(e); }
    #{
        a: a, got_len: got.len(), got_first: got[0], head: head, renamed: renamed,
        empty_size: empty.size, empty_get: avatars.get(empty.id).len(),
        page1: page1.items.map(|f| f.name), page2: page2.items.map(|f| f.name),
        last_cursor: page2.cursor, errors: errors,
        deleted: avatars.delete(a.id), deleted_again: avatars.delete(a.id),
        missing_get: avatars.get(a.id), missing_head: avatars.head(a.id),
        garbage: avatars.get("../../etc/passwd"), other_collection: files::collection("x").head(b.id),
    }
"#;

async fn script_api(app: &TestApp) {
    app.create_app("shop").await;
    app.deploy("shop", "POST", "/tour", TOUR).await;
    let (status, out) = run(app, "shop", "/tour").await;
    assert_eq!(status, 200, "{out}");
    let a = &out["a"];
    assert!(
        a["id"].as_str().is_some_and(|id| id.starts_with("fil_")),
        "{a}"
    );
    assert_eq!(a["name"], "me.png");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(a["size"], 3);
    // SHA-256 of [7, 7, 7].
    assert_eq!(a["checksum"].as_str().map(str::len), Some(64));
    assert!(a.get("blob_key").is_none(), "internal key leaked: {a}");
    assert_eq!(
        (out["got_len"].clone(), out["got_first"].clone()),
        (json!(3), json!(7))
    );
    assert_eq!(out["head"]["size"], 5);
    assert_eq!(out["renamed"]["name"], "note2.txt");
    assert_eq!(out["renamed"]["size"], 12);
    assert_eq!(out["renamed"]["content_type"], "text/plain");
    assert_eq!(
        (out["empty_size"].clone(), out["empty_get"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(out["page1"], json!(["me.png", "note2.txt"]));
    assert_eq!(out["page2"], json!(["empty"]));
    assert_eq!(out["last_cursor"], Value::Null);
    let errors: Vec<String> = out["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        errors.iter().all(|e| e.starts_with("files: ")),
        "{errors:?}"
    );
    assert!(errors[0].contains("name"), "{}", errors[0]);
    assert!(errors[1].contains("content_type"), "{}", errors[1]);
    assert!(errors[2].contains("data"), "{}", errors[2]);
    assert!(errors[3].contains("content_type"), "{}", errors[3]);
    assert!(errors[4].contains("path"), "{}", errors[4]);
    assert!(errors[5].contains("name"), "{}", errors[5]);
    assert!(errors[6].contains("not found"), "{}", errors[6]);
    assert_eq!(
        (out["deleted"].clone(), out["deleted_again"].clone()),
        (json!(true), json!(false))
    );
    for missing in ["missing_get", "missing_head", "garbage", "other_collection"] {
        assert_eq!(out[missing], Value::Null, "{missing}");
    }
    // A route returning a file's Blob answers its bytes.
    app.deploy(
        "shop",
        "GET",
        "/raw",
        r#"let f = files::collection("raw").create(#{name: "r", content_type: "text/plain", data: "raw bytes"});
           files::collection("raw").get(f.id)"#,
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/raw")
        .send()
        .await
        .expect("raw");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), b"raw bytes");

    // A 5 MiB file is larger than a script may build a string (1 MiB), yet a route can
    // read it and answer it whole.
    let five = (0..5 << 20)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<u8>>();
    let big = app
        .upload(
            "shop",
            "big",
            "five.bin",
            "application/octet-stream",
            five.clone(),
        )
        .await;
    app.deploy(
        "shop",
        "GET",
        "/five",
        &format!(
            r#"files::collection("big").get("{}")"#,
            big["id"].as_str().unwrap_or_default()
        ),
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/five")
        .send()
        .await
        .expect("five");
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.expect("bytes").as_ref() == five.as_slice());
}

async fn script_api_on_both_databases(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    script_api(&app).await;
    app.shutdown().await;
}

/// The same tour with the bytes in an S3-compatible bucket (a real moto server).
#[tokio::test]
async fn script_api_on_s3() {
    let Some(moto) = Moto::start_or_skip("script_api_on_s3").await else {
        return;
    };
    let s3 = moto.bucket("picloud-files").await;
    let app = TestApp::start_with(Backend::Sqlite, |c| c.files.s3 = Some(s3))
        .await
        .expect("server");
    script_api(&app).await;
    // The admin download streams from the bucket too.
    let meta = app
        .upload(
            "shop",
            "docs",
            "a.pdf",
            "application/pdf",
            vec![9u8; 70_000],
        )
        .await;
    let r = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/admin/apps/shop/files/docs/{}/content",
                meta["id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("bytes").len(), 70_000);
    app.shutdown().await;
}

async fn triggers_see_metadata_not_bytes(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "audit",
            r#"kv::collection("audit").set(ctx.event.op, ctx.event); ()"#,
        )
        .await;
    let t = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps/shop/triggers/files",
            Some(json!({"script_id": handler["id"], "collection": "avatars"})),
            201,
        )
        .await;
    assert_eq!(
        (t["kind"].as_str(), t["collection"].as_str()),
        (Some("files"), Some("avatars"))
    );
    assert_eq!(t["ops"], json!(["create", "update", "delete"]));
    app.deploy(
        "shop",
        "POST",
        "/go",
        r#"
        let c = files::collection("avatars");
        let f = c.create(#{name: "a.png", content_type: "image/png", data: blob(4, 1)});
        c.update(f.id, #{name: "b.png"});
        c.delete(f.id);
        files::collection("other").create(#{name: "x", content_type: "text/plain", data: "x"});
        f.id
    "#,
    )
    .await;
    let (status, id) = run(&app, "shop", "/go").await;
    assert_eq!(status, 200);
    let events = app
        .eventually("three files events", || async {
            let page = app
                .admin_ok(Method::GET, "/api/v1/admin/apps/shop/kv/audit", None, 200)
                .await;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= 3).then_some(items)
        })
        .await;
    let by = |op: &str| {
        events
            .iter()
            .find(|e| e["key"] == op)
            .map(|e| e["value"].clone())
            .unwrap_or_else(|| panic!("no {op} event"))
    };
    let create = by("create");
    assert_eq!(create["source"], "files");
    assert_eq!(create["files"]["collection"], "avatars");
    assert_eq!(create["files"]["file"]["id"], id);
    assert_eq!(create["files"]["file"]["size"], 4);
    assert_eq!(create["files"]["prev"], Value::Null);
    assert!(create["files"]["file"].get("data").is_none());
    let update = by("update");
    assert_eq!(update["files"]["file"]["name"], "b.png");
    assert_eq!(update["files"]["prev"]["name"], "a.png");
    let delete = by("delete");
    assert_eq!(delete["files"]["prev"]["name"], "b.png");
    app.shutdown().await;
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn admin_api_and_serving_rules(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.files.max_file_size_bytes = 64 * 1024)
        .await
        .expect("server");
    app.create_app("shop").await;
    let html = app
        .upload(
            "shop",
            "site",
            "<x>\".html",
            "text/html",
            "<script>alert(document.cookie)</script>",
        )
        .await;
    let svg = app
        .upload(
            "shop",
            "site",
            "logo.svg",
            "image/svg+xml",
            "<svg onload=alert(1)/>",
        )
        .await;
    let png = app
        .upload(
            "shop",
            "img",
            "ok.png",
            "image/png",
            vec![137u8, 80, 78, 71],
        )
        .await;
    let empty = app
        .upload(
            "shop",
            "img",
            "empty.bin",
            "application/octet-stream",
            Vec::<u8>::new(),
        )
        .await;
    assert_eq!(empty["size"], 0);

    let content = |f: &Value| {
        format!(
            "/api/v1/admin/apps/shop/files/{}/{}/content",
            f["collection"].as_str().unwrap_or_default(),
            f["id"].as_str().unwrap_or_default()
        )
    };
    // Active content: an opaque attachment, sandboxed, never sniffed.
    for active in [&html, &svg] {
        let r = app.admin(Method::GET, &content(active), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "application/octet-stream");
        assert!(
            header(&r, "content-disposition").starts_with("attachment;"),
            "{:?}",
            r.headers()
        );
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert!(header(&r, "content-security-policy").starts_with("sandbox"));
    }
    let r = app.admin(Method::GET, &content(&html), None).await;
    assert!(
        header(&r, "content-disposition").contains("filename*=UTF-8''%3Cx%3E%22.html"),
        "{:?}",
        r.headers()
    );
    assert_eq!(
        r.text().await.expect("body"),
        "<script>alert(document.cookie)</script>"
    );
    // An inert type renders inline, still sandboxed and unsniffed.
    let r = app.admin(Method::GET, &content(&png), None).await;
    assert_eq!(header(&r, "content-type"), "image/png");
    assert!(header(&r, "content-disposition").starts_with("inline;"));
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert!(header(&r, "content-security-policy").starts_with("sandbox"));

    // List, filter, metadata.
    let all = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/files?limit=2",
            None,
            200,
        )
        .await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
    assert!(all["next_cursor"].is_string());
    let img = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/files?collection=img",
            None,
            200,
        )
        .await;
    assert_eq!(img["items"].as_array().map(Vec::len), Some(2));
    let meta_path = |f: &Value| {
        format!(
            "/api/v1/admin/apps/shop/files/{}/{}",
            f["collection"].as_str().unwrap_or_default(),
            f["id"].as_str().unwrap_or_default()
        )
    };
    let meta = app.admin_ok(Method::GET, &meta_path(&png), None, 200).await;
    assert_eq!(meta["name"], "ok.png");

    // Replace the bytes (Content-Type kept from the request).
    let r = app
        .client
        .put(app.url(&content(&png)))
        .bearer_auth(&app.admin_token)
        .header("content-type", "image/gif")
        .body("GIF89a")
        .send()
        .await
        .expect("replace");
    assert_eq!(r.status(), 200);
    let replaced: Value = r.json().await.expect("json");
    assert_eq!(
        (replaced["content_type"].as_str(), replaced["size"].as_u64()),
        (Some("image/gif"), Some(6))
    );
    let r = app.admin(Method::GET, &content(&png), None).await;
    assert_eq!(r.text().await.expect("body"), "GIF89a");

    // Past the cap while streaming: 413, nothing stored.
    let before = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/files", None, 200)
        .await;
    let big = vec![b'x'; 200 * 1024];
    let r = app
        .client
        .post(app.url("/api/v1/admin/apps/shop/files/img"))
        .query(&[("name", "big.bin")])
        .bearer_auth(&app.admin_token)
        .body(big)
        .send()
        .await
        .expect("big upload");
    assert_eq!(r.status(), 413);
    let error: Value = r.json().await.expect("json");
    assert_eq!(error["error"]["code"], "payload_too_large");
    let after = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/files", None, 200)
        .await;
    assert_eq!(before["items"], after["items"]);

    // Bad input names the field.
    for (query, ct, field) in [
        ("", "text/plain", "name"),
        ("?name=a", "not a type", "content_type"),
        // A second type after an inert one: browsers would render it (hostile probe).
        ("?name=a", "image/png;a=b,text/html", "content_type"),
        (
            "?name=a",
            "application/pdf;x=\"a,b\",text/html",
            "content_type",
        ),
    ] {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/admin/apps/shop/files/img{query}")))
            .bearer_auth(&app.admin_token)
            .header("content-type", ct)
            .body("x")
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 422);
        let error: Value = r.json().await.expect("json");
        assert_eq!(error["error"]["field"], field, "{error}");
    }

    // Delete: 204, then 404; the bytes are gone with it.
    app.admin_ok(Method::DELETE, &meta_path(&html), None, 204)
        .await;
    app.admin_ok(Method::DELETE, &meta_path(&html), None, 404)
        .await;
    app.admin_ok(Method::GET, &content(&html), None, 404).await;
    app.shutdown().await;
}

/// The bytes on disk of a file, found through its row.
async fn blob_path(app: &TestApp, slug: &str, collection: &str, id: &str) -> std::path::PathBuf {
    let store = app.started().state.store.clone();
    let app_id = store.get_app_by_slug(slug).await.expect("app").id;
    let file = store
        .files_head(
            &app_id,
            collection,
            &picloud_core::FileId::parse(id).expect("id"),
        )
        .await
        .expect("head")
        .expect("file");
    let fs = picloud_blob::FsStore::open(&app.started().state.config.files_root).expect("fs");
    fs.path_of(&picloud_blob::BlobKey::parse(&file.blob_key).expect("key"))
}

async fn corruption_is_refused_and_kept(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let f = app
        .upload("shop", "c", "a.txt", "text/plain", "x".repeat(100_000))
        .await;
    let id = f["id"].as_str().expect("id").to_owned();
    let path = blob_path(&app, "shop", "c", &id).await;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[50_000] ^= 1;
    std::fs::write(&path, &bytes).expect("flip a byte");

    app.deploy(
        "shop",
        "GET",
        "/get",
        &format!(
            r#"let out = "served";
               try {{ files::collection("c").get("{id}"); }} catch (e) {{ out = e; }}
               out"#
        ),
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/get")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let message = r.text().await.expect("body");
    assert!(message.starts_with("files: corrupted"), "{message}");
    assert!(
        !message.contains(path.to_string_lossy().as_ref()),
        "path leaked: {message}"
    );
    // A download is cut off, never completed: the connection may close before the
    // response head (the only chunk was held back) or in the body.
    let sent = app
        .client
        .get(app.url(&format!("/api/v1/admin/apps/shop/files/c/{id}/content")))
        .bearer_auth(&app.admin_token)
        .send()
        .await;
    if let Ok(r) = sent {
        let body = r.bytes().await;
        assert!(
            body.is_err() || body.is_ok_and(|b| b.len() < 100_000),
            "a corrupted download completed"
        );
    }
    // Never auto-deleted: the bytes are still there for an operator.
    assert!(path.exists());
    app.shutdown().await;
}

async fn orphans_are_swept_and_rows_kept(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.files.orphan_sweep_interval = Duration::from_millis(300);
        c.files.tmp_ttl = Duration::from_secs(1);
    })
    .await
    .expect("server");
    app.create_app("shop").await;
    let kept = app
        .upload("shop", "c", "kept.txt", "text/plain", "kept")
        .await;
    let kept_path = blob_path(&app, "shop", "c", kept["id"].as_str().expect("id")).await;
    // Bytes no row names, as a crash between the two steps leaves them.
    let app_id = app
        .started()
        .state
        .store
        .get_app_by_slug("shop")
        .await
        .expect("app")
        .id;
    let blobs = picloud_blob::FsStore::open(&app.started().state.config.files_root).expect("fs");
    let orphan = picloud_blob::BlobKey::generate(&app_id);
    picloud_blob::put_bytes(&blobs, &orphan, "orphan".into(), 1 << 20)
        .await
        .expect("orphan");
    let orphan_path = blobs.path_of(&orphan);
    assert!(orphan_path.exists());
    app.eventually("the orphan is swept", || async {
        (!orphan_path.exists()).then_some(())
    })
    .await;
    assert!(kept_path.exists());
    let r = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/admin/apps/shop/files/c/{}/content",
                kept["id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(r.text().await.expect("body"), "kept");
    app.shutdown().await;
}

async fn apps_and_rights_are_isolated(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("one").await;
    app.create_app("two").await;
    let theirs = app
        .upload("two", "c", "secret.txt", "text/plain", "theirs")
        .await;
    let id = theirs["id"].as_str().expect("id");
    app.deploy(
        "one",
        "POST",
        "/steal",
        &format!(
            r#"let c = files::collection("c");
               #{{head: c.head("{id}"), get: c.get("{id}"), delete: c.delete("{id}"),
                 list: c.list().items.len()}}"#
        ),
    )
    .await;
    let (status, out) = run(&app, "one", "/steal").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out,
        json!({"head": null, "get": null, "delete": false, "list": 0})
    );
    app.admin_ok(
        Method::GET,
        &format!("/api/v1/admin/apps/one/files/c/{id}"),
        None,
        404,
    )
    .await;
    app.admin_ok(
        Method::GET,
        &format!("/api/v1/admin/apps/one/files/c/{id}/content"),
        None,
        404,
    )
    .await;
    app.admin_ok(
        Method::GET,
        &format!("/api/v1/admin/apps/two/files/c/{id}"),
        None,
        200,
    )
    .await;

    // A caller with script:read can read through a required-auth route, not write.
    let script = app
        .create_script(
            "two",
            "rw",
            &format!(
                r#"let c = files::collection("c");
                   if ctx.request.query.write == "1" {{ c.create(#{{name: "n", content_type: "text/plain", data: "x"}}); }}
                   c.get("{id}").len()"#
            ),
        )
        .await;
    app.required_route(&script, "GET", "/rw").await;
    let key = app.api_key(&["script:read", "script:invoke"]).await;
    let key = key.as_str();
    let r = app
        .on_host("two", Method::GET, "/rw")
        .bearer_auth(key)
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), 200);
    let r = app
        .on_host("two", Method::GET, "/rw?write=1")
        .bearer_auth(key)
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 403);
    // A refusal the script catches and returns is its text, not a failed run
    // (hostile probe: "a value of type Forbidden has no JSON form", 500).
    let caught = app
        .create_script(
            "two",
            "caught",
            r#"let out = "written";
               try { files::collection("c").create(#{name: "n", content_type: "text/plain", data: "x"}); }
               catch (e) { out = e; }
               out"#,
        )
        .await;
    app.required_route(&caught, "GET", "/caught").await;
    let r = app
        .on_host("two", Method::GET, "/caught")
        .bearer_auth(key)
        .send()
        .await
        .expect("caught");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert!(text.trim_matches('"').starts_with("forbidden: "), "{text}");
    app.shutdown().await;
}

/// File storage out of space: a clear 503 naming file storage (not the database),
/// nothing half-written left, the server fine afterwards.
#[tokio::test]
async fn a_full_file_store_is_a_clear_503_and_recovers() {
    let Some(fs) = picloud_testkit::tmpfs::Tmpfs::mount(2 << 20) else {
        return;
    };
    let root = fs.path().to_owned();
    let app = TestApp::start_with(Backend::Sqlite, |c| c.files_root = root)
        .await
        .expect("server");
    app.create_app("shop").await;
    let r = app
        .client
        .post(app.url("/api/v1/admin/apps/shop/files/c"))
        .query(&[("name", "big.bin")])
        .bearer_auth(&app.admin_token)
        .body(vec![7u8; 3 << 20])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 503);
    let error: Value = r.json().await.expect("json");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("file storage"), "{error}");
    assert!(!message.contains("database"), "{error}");
    let listed = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/files", None, 200)
        .await;
    assert_eq!(listed["items"], json!([]));
    // The partial upload's space came back: a small file fits.
    app.upload("shop", "c", "small.txt", "text/plain", "fits")
        .await;
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    script_api_on_both_databases => script_api_on_both_databases,
    files_triggers_see_metadata_not_bytes => triggers_see_metadata_not_bytes,
    admin_api_and_serving_rules => admin_api_and_serving_rules,
    corruption_is_refused_and_kept => corruption_is_refused_and_kept,
    orphans_are_swept_and_rows_kept => orphans_are_swept_and_rows_kept,
    apps_and_rights_are_isolated => apps_and_rights_are_isolated,
);
