//! Documents end to end, on both backends: the script API and its errors, atomic
//! patches under concurrency, docs triggers with `prev_data`, admin browsing, and
//! isolation between apps.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn run(app: &TestApp, slug: &str, path: &str, body: Value) -> Value {
    let r = app
        .on_host(slug, Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    // A script's string result is sent as text.
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn script_api_and_envelope(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.events.docs_max_doc_bytes = 200)
        .await
        .expect("server");
    app.create_app("shop").await;
    app.deploy(
        "shop",
        "POST",
        "/tour",
        r#"
        let users = docs::collection("users");
        let a = users.create(#{name: "ann", age: 30, tags: ["x"]});
        let b = users.create(#{name: "bob", age: 9});
        users.create(#{name: "cy", age: 10, tier: "gold"});
        let got = users.get(a.id);
        let updated = users.update(b.id, #{name: "bob", age: 11});
        let patched = users.patch(a.id, #{"$inc": #{age: 1}, "$set": #{"address.city": "Oslo"},
                                         "$unset": ["tags"]});
        let older = users.find(#{age: #{"$gte": 10}, "$sort": "-age"});
        let first = users.find_one(#{age: #{"$lt": 100}, "$sort": "age"});
        let none = users.find_one(#{name: "nobody"});
        let page1 = users.list(#{limit: 2});
        let page2 = users.list(#{limit: 2, cursor: page1.cursor});
        let deleted = users.delete(b.id);
        let deleted_again = users.delete(b.id);
        #{
            a: a, got: got, updated: updated, patched: patched,
            older: older.map(|d| d.data.name), first: first.data.name, none: none,
            page1: page1.items.map(|d| d.data.name), page2: page2.items.map(|d| d.data.name),
            last_cursor: page2.cursor, deleted: deleted, deleted_again: deleted_again,
            missing: users.get(b.id), garbage_id: users.get("not-an-id"),
        }
    "#,
    )
    .await;
    let out = run(&app, "shop", "/tour", json!(null)).await;
    let a = &out["a"];
    assert!(a["id"].as_str().is_some_and(|id| id.starts_with("doc_")));
    assert_eq!(a["data"], json!({"name": "ann", "age": 30, "tags": ["x"]}));
    assert_eq!(a["created_at"], a["updated_at"]);
    let keys: Vec<&str> = a
        .as_object()
        .expect("map")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["created_at", "data", "id", "updated_at"]);
    assert_eq!(out["got"], *a);
    assert_eq!(out["updated"]["data"], json!({"name": "bob", "age": 11}));
    assert_eq!(
        out["patched"]["data"],
        json!({"name": "ann", "age": 31, "address": {"city": "Oslo"}})
    );
    assert_eq!(out["patched"]["created_at"], a["created_at"]);
    assert_eq!(out["older"], json!(["ann", "bob", "cy"]));
    assert_eq!(out["first"], "cy");
    assert_eq!(out["none"], Value::Null);
    assert_eq!(out["page1"], json!(["ann", "bob"]));
    assert_eq!(out["page2"], json!(["cy"]));
    assert_eq!(out["last_cursor"], Value::Null);
    assert_eq!(out["deleted"], true);
    assert_eq!(out["deleted_again"], false);
    assert_eq!(out["missing"], Value::Null);
    assert_eq!(out["garbage_id"], Value::Null);

    // Every bad input throws an error naming the namespace and the offending part,
    // and writes nothing.
    app.deploy(
        "shop",
        "POST",
        "/bad",
        r#"
        let users = docs::collection("users");
        let id = users.create(#{n: 1}).id;
        let blob = "";
        blob.pad(300, "x");
        let out = #{};
        try { users.find(#{n: #{"$regex": "x"}}); out.unknown_op = "no error"; } catch (e) { out.unknown_op = `${e}`; }
        try { users.find(#{"a.b.c.d.e.f": 1}); out.too_deep = "no error"; } catch (e) { out.too_deep = `${e}`; }
        try { users.find(#{"$or": "x"}); out.bad_or = "no error"; } catch (e) { out.bad_or = `${e}`; }
        try { users.find(#{"$sort": #{n: 1}}); out.sort_map = "no error"; } catch (e) { out.sort_map = `${e}`; }
        try { users.find(#{"$limit": 5000}); out.bad_limit = "no error"; } catch (e) { out.bad_limit = `${e}`; }
        try { users.create([1, 2]); out.not_map = "no error"; } catch (e) { out.not_map = `${e}`; }
        try { users.create(#{blob: blob}); out.too_big = "no error"; } catch (e) { out.too_big = `${e}`; }
        try { users.patch(id, #{"$set": #{blob: blob}}); out.patch_too_big = "no error"; } catch (e) { out.patch_too_big = `${e}`; }
        try { users.patch(id, #{"$inc": #{n: "one"}}); out.bad_inc = "no error"; } catch (e) { out.bad_inc = `${e}`; }
        try { users.patch(id, #{"$push": #{n: 1}}); out.bad_patch_op = "no error"; } catch (e) { out.bad_patch_op = `${e}`; }
        try { users.update("doc_00000000000000000000000000", #{}); out.update_missing = "no error"; } catch (e) { out.update_missing = `${e}`; }
        try { users.create(#{s: "a\x00b"}); out.nul = "no error"; } catch (e) { out.nul = `${e}`; }
        try { docs::collection("no spaces"); out.bad_collection = "no error"; } catch (e) { out.bad_collection = `${e}`; }
        try { users.list(#{prefix: "a"}); out.bad_option = "no error"; } catch (e) { out.bad_option = `${e}`; }
        out.after = users.get(id).data;
        out.count = users.find(#{}).len();
        out
    "#,
    )
    .await;
    let out = run(&app, "shop", "/bad", json!(null)).await;
    let expect = |field: &str, needles: &[&str]| {
        let message = out[field].as_str().unwrap_or_default();
        assert!(message.starts_with("docs: "), "{field}: {message}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "{field}: {message:?} lacks {needle:?}"
            );
        }
    };
    expect("unknown_op", &["$regex"]);
    expect("too_deep", &["a.b.c.d.e.f", "5"]);
    expect("bad_or", &["$or"]);
    expect("sort_map", &["$sort"]);
    expect("bad_limit", &["$limit"]);
    expect("not_map", &["map"]);
    expect("too_big", &["PICLOUD_DOCS_MAX_DOC_BYTES"]);
    expect("patch_too_big", &["limit"]);
    expect("bad_inc", &["$inc", "n"]);
    expect("bad_patch_op", &["$push"]);
    expect("update_missing", &["not found"]);
    expect("nul", &["NUL"]);
    expect("bad_collection", &["no spaces"]);
    expect("bad_option", &["prefix"]);
    assert_eq!(out["after"], json!({"n": 1}));
    // ann, cy and this script's own document: nothing half-written.
    assert_eq!(out["count"], 3);
    app.shutdown().await;
}

/// Twenty script runs each add 1 to the same counter at the same time.
async fn concurrent_inc_is_exact(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    app.deploy(
        "shop",
        "POST",
        "/setup",
        r#"docs::collection("counters").create(#{hits: 0}).id"#,
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/hit/{id}",
        r#"docs::collection("counters").patch(ctx.request.params.id, #{"$inc": #{hits: 1}}).data.hits"#,
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/read/{id}",
        r#"docs::collection("counters").get(ctx.request.params.id).data.hits"#,
    )
    .await;
    let id = run(&app, "shop", "/setup", json!(null)).await;
    let id = id.as_str().expect("id").to_owned();
    let mut hits = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app
            .on_host("shop", Method::POST, &format!("/hit/{id}"))
            .send();
        hits.spawn(async move {
            let r = request.await.expect("request");
            assert_eq!(r.status(), 200);
            r.json::<i64>().await.expect("count")
        });
    }
    let mut seen: Vec<i64> = hits.join_all().await;
    seen.sort_unstable();
    // Each run saw its own increment applied on top of all earlier ones.
    assert_eq!(seen, (1..=20).collect::<Vec<i64>>());
    let total: Value = app
        .on_host("shop", Method::GET, &format!("/read/{id}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(total, 20);
    app.shutdown().await;
}

async fn docs_triggers_carry_prev_data(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "audit",
            r#"kv::collection("audit").set(ctx.event.id, ctx.event); ()"#,
        )
        .await;
    app.deploy(
        "shop",
        "POST",
        "/orders",
        r#"
        let orders = docs::collection("orders");
        let o = orders.create(#{total: 5});
        orders.patch(o.id, #{"$inc": #{total: 2}});
        orders.delete(o.id);
        docs::collection("carts").create(#{});
        o.id
    "#,
    )
    .await;
    let t = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps/shop/triggers/docs",
            Some(json!({"script_id": handler["id"], "collection": "orders"})),
            201,
        )
        .await;
    assert_eq!(t["kind"], "docs");
    assert_eq!(t["collection"], "orders");
    assert_eq!(t["ops"], json!(["create", "update", "delete"]));
    let id = run(&app, "shop", "/orders", json!(null)).await;
    let events = app
        .eventually("three audit entries", || async {
            let page = app
                .admin_ok(Method::GET, "/api/v1/admin/apps/shop/kv/audit", None, 200)
                .await;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= 3).then_some(items)
        })
        .await;
    let by_op = |op: &str| {
        events
            .iter()
            .map(|e| e["value"].clone())
            .find(|e| e["op"] == op)
            .unwrap_or_else(|| panic!("no {op} event"))
    };
    let docs = |op: &str| by_op(op)["docs"].clone();
    assert_eq!(by_op("create")["source"], "docs");
    assert_eq!(
        docs("create"),
        json!({"collection": "orders", "id": id, "data": {"total": 5}, "prev_data": null})
    );
    assert_eq!(
        docs("update"),
        json!({"collection": "orders", "id": id, "data": {"total": 7}, "prev_data": {"total": 5}})
    );
    assert_eq!(
        docs("delete"),
        json!({"collection": "orders", "id": id, "data": null, "prev_data": {"total": 7}})
    );
    let runs = app.executions("shop", 4).await;
    assert!(runs
        .iter()
        .any(|r| r["source"] == "docs" && r["status"] == "ok"));

    // Bad trigger bodies are refused with the field named.
    for (body, field) in [
        (json!({"script_id": handler["id"]}), "collection"),
        (
            json!({"script_id": handler["id"], "collection": "o", "ops": ["set"]}),
            "ops",
        ),
        (
            json!({"script_id": handler["id"], "collection": "o", "ops": []}),
            "ops",
        ),
        (
            json!({"script_id": handler["id"], "collection": "a b"}),
            "collection",
        ),
    ] {
        let r = app
            .admin(
                Method::POST,
                "/api/v1/admin/apps/shop/triggers/docs",
                Some(body),
            )
            .await;
        assert_eq!(r.status(), 422);
        let error: Value = r.json().await.expect("json");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    app.shutdown().await;
}

async fn admin_browse_filters_and_pages(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    app.deploy(
        "shop",
        "POST",
        "/seed",
        r#"
        let items = docs::collection("items");
        for i in 0..7 { items.create(#{i: i, even: i % 2 == 0, name: `item ${i}`}); }
    "#,
    )
    .await;
    app.on_host("shop", Method::POST, "/seed")
        .send()
        .await
        .expect("seed");
    let browse = |query: String| {
        let app = &app;
        async move {
            app.admin(
                Method::GET,
                &format!("/api/v1/admin/apps/shop/docs/items{query}"),
                None,
            )
            .await
        }
    };
    let mut names = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let page: Value = browse(query.clone()).await.json().await.expect("json");
        for item in page["items"].as_array().expect("items") {
            let keys: Vec<&str> = item
                .as_object()
                .expect("map")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["created_at", "data", "id", "updated_at"]);
            names.push(item["data"]["i"].as_i64().expect("i"));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, (0..7).collect::<Vec<_>>());
    let filter = urlencode(r#"{"even": true, "i": {"$gt": 2}}"#);
    let page: Value = browse(format!("?filter={filter}"))
        .await
        .json()
        .await
        .expect("json");
    let found: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["data"]["i"].as_i64().expect("i"))
        .collect();
    assert_eq!(found, [4, 6]);
    for bad in [r#"{"i": {"$near": 1}}"#, "not json", r#"{"$sort": "i"}"#] {
        let r = browse(format!("?filter={}", urlencode(bad))).await;
        assert_eq!(r.status(), 422, "{bad}");
        let error: Value = r.json().await.expect("json");
        assert_eq!(error["error"]["field"], "filter");
    }
    let r = browse("?cursor=garbage".into()).await;
    assert_eq!(r.status(), 400);
    app.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// App B cannot see, change or delete app A's documents, by any filter or id.
async fn apps_are_isolated(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("alpha").await;
    app.create_app("beta").await;
    app.deploy(
        "alpha",
        "POST",
        "/put",
        r#"docs::collection("secrets").create(#{owner: "alpha", n: 1}).id"#,
    )
    .await;
    app.deploy(
        "beta",
        "POST",
        "/probe/{id}",
        r#"
        let s = docs::collection("secrets");
        let id = ctx.request.params.id;
        let out = #{
            all: s.find(#{}).len(),
            by_owner: s.find(#{owner: "alpha"}).len(),
            any: s.find(#{"$or": [#{owner: #{"$exists": true}}, #{owner: #{"$exists": false}}]}).len(),
            ne: s.find(#{owner: #{"$ne": "beta"}}).len(),
            one: s.find_one(#{}),
            list: s.list().items.len(),
            get: s.get(id),
            delete: s.delete(id),
            update: "refused", patch: "refused",
        };
        try { s.update(id, #{owner: "beta"}); out.update = "updated"; } catch (e) {}
        try { s.patch(id, #{"$set": #{owner: "beta"}}); out.patch = "patched"; } catch (e) {}
        out
    "#,
    )
    .await;
    let id = run(&app, "alpha", "/put", json!(null)).await;
    let id = id.as_str().expect("id");
    let out = run(&app, "beta", &format!("/probe/{id}"), json!(null)).await;
    assert_eq!(
        out,
        json!({"all": 0, "by_owner": 0, "any": 0, "ne": 0, "one": null, "list": 0,
               "get": null, "delete": false, "update": "refused", "patch": "refused"})
    );
    let page = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/beta/docs/secrets",
            None,
            200,
        )
        .await;
    assert_eq!(page["items"], json!([]));
    let page = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/alpha/docs/secrets",
            None,
            200,
        )
        .await;
    assert_eq!(page["items"][0]["data"], json!({"owner": "alpha", "n": 1}));
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    script_api_envelope_and_errors => script_api_and_envelope,
    twenty_concurrent_incs_are_exact => concurrent_inc_is_exact,
    docs_triggers_carry_prev_data => docs_triggers_carry_prev_data,
    admin_browse_filters_and_pages => admin_browse_filters_and_pages,
    apps_cannot_see_each_others_documents => apps_are_isolated,
);
