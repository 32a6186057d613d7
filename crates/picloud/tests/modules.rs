//! Modules end to end, on both backends: imports and constants, hot updates through a
//! chain of modules, the save-time rules (shape, reserved names, missing modules,
//! cycles, depth, deleting what is imported), the run-time defences for rows written
//! around the admin API, and the wall between apps.

use picloud_core::model::ScriptKind;
use picloud_core::AppId;
use picloud_store::{NewScript, ScriptPatch};
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn get(app: &TestApp, slug: &str, path: &str) -> Value {
    let r = app
        .on_host(slug, Method::GET, path)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    if status != 200 {
        let runs = app.executions(slug, 1).await;
        panic!("{path}: {status} {text}; last run: {}", runs[0]);
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn module(app: &TestApp, slug: &str, name: &str, source: &str) -> String {
    let body = app
        .admin_ok(
            Method::POST,
            &format!("/api/v1/admin/apps/{slug}/scripts"),
            Some(json!({"name": name, "kind": "module", "source": source})),
            201,
        )
        .await;
    body["id"].as_str().expect("id").to_owned()
}

/// Saves a script and expects a refusal; returns the error body.
async fn refused(app: &TestApp, slug: &str, body: Value, status: u16) -> Value {
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/apps/{slug}/scripts"),
        Some(body),
        status,
    )
    .await["error"]
        .clone()
}

async fn imports_and_hot_updates(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let math = module(
        &app,
        "shop",
        "math",
        "const BASE = 10;\nfn twice(x) { x * 2 }\nfn plus_base(x) { x + global::BASE }",
    )
    .await;
    module(
        &app,
        "shop",
        "util",
        "import \"math\" as m;\nfn quad(x) { m::twice(m::twice(x)) }",
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/calc",
        r#"
        import "math" as m;
        import "util" as u;
        fn inner() { import "math" as mm; mm::twice(1) }
        #{ twice: m::twice(21), base: m::BASE, plus: m::plus_base(1), quad: u::quad(3),
           inner: inner() }
        "#,
    )
    .await;
    assert_eq!(
        get(&app, "shop", "/calc").await,
        json!({"twice": 42, "base": 10, "plus": 11, "quad": 12, "inner": 2})
    );

    // An edit of a module reaches the next request, also through the module that
    // imports it; no restart, no re-save of the importers.
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{math}"),
        Some(json!({"source": "const BASE = 100;\nfn twice(x) { x * 3 }\nfn plus_base(x) { x + global::BASE }"})),
        200,
    )
    .await;
    assert_eq!(
        get(&app, "shop", "/calc").await,
        json!({"twice": 63, "base": 100, "plus": 101, "quad": 27, "inner": 3})
    );

    // A module's run-time error names the module's function and stays catchable.
    module(&app, "shop", "bad", "fn boom() { throw \"no luck\" }").await;
    app.deploy(
        "shop",
        "GET",
        "/boom",
        r#"import "bad" as b; let out = (); try { b::boom(); } catch (e) { out = e; } out"#,
    )
    .await;
    assert_eq!(get(&app, "shop", "/boom").await, json!("no luck"));
    app.shutdown().await;
}

/// A module's constants may be computed — from its own functions and from what it
/// imports — and are computed once per version of the module and of its imports.
async fn computed_constants(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.limits.max_operations = 1_000_000)
        .await
        .expect("server");
    app.create_app("shop").await;
    let base = module(&app, "shop", "base", "const V = 5;").await;
    module(
        &app,
        "shop",
        "derived",
        "import \"base\" as b;\nconst V = b::V + 10;\nfn nonce() { random::uuid() }\nconst N = nonce();",
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/v",
        r#"import "derived" as d; #{v: d::V, n: d::N}"#,
    )
    .await;
    let first = get(&app, "shop", "/v").await;
    assert_eq!(first["v"], 15);
    assert_eq!(
        get(&app, "shop", "/v").await,
        first,
        "evaluated once, not per import"
    );
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{base}"),
        Some(json!({"source": "const V = 7;"})),
        200,
    )
    .await;
    let second = get(&app, "shop", "/v").await;
    assert_eq!(second["v"], 17, "an edit below reaches the importer");
    assert_ne!(second["n"], first["n"], "and evaluates it again");

    // A function the constant calls cannot reach the services: the run fails, naming
    // the module, and the server goes on.
    module(
        &app,
        "shop",
        "sneaky",
        "fn read() { kv::collection(\"c\").get(\"k\") }\nconst X = read();",
    )
    .await;
    app.deploy("shop", "GET", "/sneaky", r#"import "sneaky" as s; s::X"#)
        .await;
    let r = app
        .on_host("shop", Method::GET, "/sneaky")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.expect("json");
    let execution = body["error"]["execution_id"].clone();
    let run = app
        .eventually("the failed run's record", || async {
            app.executions("shop", 1)
                .await
                .into_iter()
                .find(|run| run["id"] == execution)
        })
        .await;
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("not available while module \"sneaky\" loads")),
        "{run}"
    );

    // A top level that never ends stops at the run's limit, every time.
    module(
        &app,
        "shop",
        "spin",
        "fn spin() { loop { } }\nconst X = spin();",
    )
    .await;
    app.deploy("shop", "GET", "/spin", r#"import "spin" as s; s::X"#)
        .await;
    for _ in 0..2 {
        let r = app
            .on_host("shop", Method::GET, "/spin")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 500);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "limit_exceeded", "{body}");
    }
    assert_eq!(get(&app, "shop", "/v").await, second);
    app.shutdown().await;
}

async fn save_time_rules(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let shapes = [
        ("let x = 1;\nfn f() { x }", 1),
        ("fn f() { 1 }\n\nprint(\"loaded\");", 3),
        ("fn f() { 1 }\nf();", 2),
        ("const A = 1;\nA + 1", 2),
        ("const T = time::now_ms();\nfn f() { 1 }", 1),
        (
            "import \"math\" as m;\nconst X = kv::collection(\"c\").get(\"k\");",
            2,
        ),
    ];
    for (source, line) in shapes {
        let e = refused(
            &app,
            "shop",
            json!({"name": "lib", "kind": "module", "source": source}),
            422,
        )
        .await;
        assert_eq!(e["field"], "source", "{source}: {e}");
        assert_eq!(e["line"], line, "{source}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains("fn")),
            "{e}"
        );
    }
    for name in ["kv", "http", "docs", "bad-name", "9lives", ""] {
        let e = refused(
            &app,
            "shop",
            json!({"name": name, "kind": "module", "source": "fn f() { 1 }"}),
            422,
        )
        .await;
        assert_eq!(e["field"], "name", "{name}: {e}");
    }
    // Imports must name an existing module of the app, by a literal.
    let e = refused(
        &app,
        "shop",
        json!({"name": "e1", "source": "let a = 1;\n  import \"nowhere\" as n;\na"}),
        422,
    )
    .await;
    assert_eq!(
        (e["field"].clone(), e["line"].clone(), e["column"].clone()),
        (json!("source"), json!(2), json!(3))
    );
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"nowhere\"")),
        "{e}"
    );
    let e = refused(
        &app,
        "shop",
        json!({"name": "e2", "source": "let n = \"math\";\nimport n as m;"}),
        422,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("string literal")),
        "{e}"
    );
    let e = refused(
        &app,
        "shop",
        json!({"name": "e3", "source": "import \"kv\" as k;"}),
        422,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("SDK namespace")),
        "{e}"
    );

    // Cycles are refused with the cycle named, including a module importing itself.
    let a = module(&app, "shop", "a", "fn f() { 1 }").await;
    module(&app, "shop", "b", "import \"a\" as a;\nfn g() { a::f() }").await;
    let e = app
        .admin_ok(
            Method::PUT,
            &format!("/api/v1/admin/scripts/{a}"),
            Some(json!({"source": "import \"b\" as b;\nfn f() { 1 }"})),
            422,
        )
        .await["error"]
        .clone();
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("circular import: a → b → a")),
        "{e}"
    );
    assert_eq!(e["line"], 1);
    let e = refused(
        &app,
        "shop",
        json!({"name": "selfish", "kind": "module", "source": "import \"selfish\" as s;"}),
        422,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("circular import")),
        "{e}"
    );

    // Depth: eight nested imports run; a ninth is refused on save.
    module(&app, "shop", "d1", "fn v() { 1 }").await;
    for i in 2..=8 {
        module(
            &app,
            "shop",
            &format!("d{i}"),
            &format!("import \"d{}\" as p;\nfn v() {{ p::v() + 1 }}", i - 1),
        )
        .await;
    }
    app.deploy("shop", "GET", "/deep", "import \"d8\" as d; d::v()")
        .await;
    assert_eq!(get(&app, "shop", "/deep").await, json!(8));
    let e = refused(
        &app,
        "shop",
        json!({"name": "d9", "kind": "module", "source": "import \"d8\" as p;\nfn v() { p::v() + 1 }"}),
        422,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("deeper than 8")),
        "{e}"
    );
    // Deepening the chain from below counts what imports the edited module too.
    module(&app, "shop", "d0", "fn v() { 0 }").await;
    let listed = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/scripts?limit=100",
            None,
            200,
        )
        .await;
    let d1 = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|s| s["name"] == "d1")
        .and_then(|s| s["id"].as_str())
        .expect("d1")
        .to_owned();
    let e = app
        .admin_ok(
            Method::PUT,
            &format!("/api/v1/admin/scripts/{d1}"),
            Some(json!({"source": "import \"d0\" as z;\nfn v() { z::v() + 1 }"})),
            422,
        )
        .await["error"]
        .clone();
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("deeper than 8")),
        "{e}"
    );
    assert_eq!(
        get(&app, "shop", "/deep").await,
        json!(8),
        "nothing changed"
    );

    // What is imported cannot be deleted or renamed; the conflict names the importers.
    let e = app
        .admin_ok(
            Method::DELETE,
            &format!("/api/v1/admin/scripts/{a}"),
            None,
            409,
        )
        .await["error"]
        .clone();
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("\"b\"")),
        "{e}"
    );
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{a}"),
        Some(json!({"name": "a2"})),
        409,
    )
    .await;
    // Modules are not route or trigger targets.
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/scripts/{a}/routes"),
        Some(json!({"method": "GET", "path": "/a"})),
        400,
    )
    .await;
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/triggers/kv",
        Some(json!({"script_id": a, "collection": "c"})),
        422,
    )
    .await;
    app.shutdown().await;
}

/// Rows written straight to the store skip the save-time checks; the resolver holds.
async fn run_time_defences(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let shop = app.create_app("shop").await;
    let shop_id = AppId::from_trusted(shop["id"].as_str().expect("id").to_owned());
    let store = app.started().state.store.clone();
    let raw = |name: &str, kind: ScriptKind, source: &str| NewScript {
        app_id: shop_id.clone(),
        name: name.into(),
        kind,
        source: source.into(),
        imports: vec![],
    };
    let x = store
        .create_script(raw("x", ScriptKind::Module, "fn f() { 1 }"))
        .await
        .expect("x");
    store
        .create_script(raw(
            "y",
            ScriptKind::Module,
            "import \"x\" as x;\nfn f() { x::f() }",
        ))
        .await
        .expect("y");
    store
        .update_script(
            &x.id,
            ScriptPatch {
                source: Some("import \"y\" as y;\nfn f() { 1 }".into()),
                ..Default::default()
            },
        )
        .await
        .expect("cycle written around the API");
    store
        .create_script(raw(
            "loud",
            ScriptKind::Module,
            "print(\"side effect\");\nfn f() { 1 }",
        ))
        .await
        .expect("statement at top level");
    for i in 1..=9 {
        let source = if i == 1 {
            "fn v() { 1 }".to_owned()
        } else {
            format!("import \"c{}\" as p;\nfn v() {{ p::v() + 1 }}", i - 1)
        };
        store
            .create_script(raw(&format!("c{i}"), ScriptKind::Module, &source))
            .await
            .expect("chain");
    }
    let endpoint = store
        .create_script(raw(
            "try",
            ScriptKind::Endpoint,
            r#"
        let out = #{};
        try { import "x" as m; out.cycle = "loaded"; } catch (e) { out.cycle = `${e}`; }
        try { import "loud" as m; out.shape = "loaded"; } catch (e) { out.shape = `${e}`; }
        try { import "c9" as m; out.deep = m::v(); } catch (e) { out.deep = `${e}`; }
        try { import "c8" as m; out.eight = m::v(); } catch (e) { out.eight = `${e}`; }
        try { import "missing" as m; out.missing = "loaded"; } catch (e) { out.missing = `${e}`; }
        out
        "#,
        ))
        .await
        .expect("endpoint");
    app.create_route(endpoint.id.as_str(), "POST", "/try").await;
    let r = app
        .on_host("shop", Method::POST, "/try")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.expect("json");
    let has = |key: &str, needle: &str| {
        assert!(
            out[key].as_str().is_some_and(|m| m.contains(needle)),
            "{key}: {out}"
        )
    };
    has("cycle", "circular import: x → y → x");
    has("shape", "may only hold");
    has("deep", "deeper than 8");
    assert_eq!(out["eight"], 8);
    has("missing", "no module named \"missing\"");
    app.shutdown().await;
}

async fn apps_cannot_import_each_other(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("alpha").await;
    let beta = app.create_app("beta").await;
    module(&app, "alpha", "secret", "fn key() { \"alpha's\" }").await;
    let e = refused(
        &app,
        "beta",
        json!({"name": "thief", "source": "import \"secret\" as s;\ns::key()"}),
        422,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("no module")),
        "{e}"
    );

    // Even a row written around the API cannot reach alpha's module.
    let store = app.started().state.store.clone();
    let thief = store
        .create_script(NewScript {
            app_id: AppId::from_trusted(beta["id"].as_str().expect("id").to_owned()),
            name: "thief".into(),
            kind: ScriptKind::Endpoint,
            source: "let out = (); try { import \"secret\" as s; out = s::key(); } catch (e) { out = `${e}`; } out".into(),
            imports: vec![],
        })
        .await
        .expect("endpoint");
    app.create_route(thief.id.as_str(), "GET", "/steal").await;
    let out = get(&app, "beta", "/steal").await;
    assert!(
        out.as_str()
            .is_some_and(|m| m.contains("no module named \"secret\"")),
        "{out}"
    );
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    imports_constants_and_hot_updates => imports_and_hot_updates,
    constants_computed_from_imports_once_per_version => computed_constants,
    save_time_rules_shape_names_cycles_depth => save_time_rules,
    run_time_defences_hold_for_rows_written_around_the_api => run_time_defences,
    apps_cannot_import_each_others_modules => apps_cannot_import_each_other,
);
