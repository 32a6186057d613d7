//! The admin API's resources, status codes, validation and pagination (API.md).

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn apps(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let created = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": "shop", "name": "The Shop"})),
            201,
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("app_"));
    assert_eq!(created["name"], "The Shop");
    assert!(created["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    // By id or slug.
    assert_eq!(
        app.admin_ok(Method::GET, &format!("/api/v1/admin/apps/{id}"), None, 200)
            .await["slug"],
        "shop"
    );
    assert_eq!(
        app.admin_ok(Method::GET, "/api/v1/admin/apps/shop", None, 200)
            .await["id"],
        id.as_str()
    );
    // Default name is the slug.
    let other = app.create_app("other").await;
    assert_eq!(other["name"], "other");

    let (status, body) = status_and_body(
        app.admin(
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": "shop"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    for bad in ["Shop", "1shop", "s", "shop_", "a".repeat(64).as_str()] {
        let (status, body) = status_and_body(
            app.admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": bad})),
            )
            .await,
        )
        .await;
        assert_eq!(status, 422, "slug {bad}");
        assert_eq!(body["error"]["field"], "slug");
    }
    let (status, body) = status_and_body(
        app.admin(
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": "x1", "colour": "red"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "unknown fields are refused: {body}");
    let (status, body) = status_and_body(
        app.admin(Method::POST, "/api/v1/admin/apps", Some(json!({"slug": 7})))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("slug"))
    );

    let renamed = app
        .admin_ok(
            Method::PATCH,
            "/api/v1/admin/apps/shop",
            Some(json!({"name": "Renamed"})),
            200,
        )
        .await;
    assert_eq!(renamed["name"], "Renamed");
    assert_eq!(renamed["slug"], "shop");

    // Pagination.
    for i in 0..5 {
        app.create_app(&format!("page-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut url = "/api/v1/admin/apps?limit=3".to_owned();
    loop {
        let page = app.admin_ok(Method::GET, &url, None, 200).await;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|a| a["slug"].as_str().expect("slug").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("/api/v1/admin/apps?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    for bad in ["limit=0", "limit=501", "limit=abc", "cursor=garbage"] {
        let (status, body) = status_and_body(
            app.admin(Method::GET, &format!("/api/v1/admin/apps?{bad}"), None)
                .await,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }

    // Deleting an app removes what it owns and frees its slug.
    app.deploy("shop", "GET", "/hi", "\"hi\"").await;
    app.on_host("shop", Method::GET, "/hi")
        .send()
        .await
        .expect("r");
    let script_count = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/scripts", None, 200)
        .await;
    let script_id = script_count["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.admin_ok(Method::DELETE, "/api/v1/admin/apps/shop", None, 204)
        .await;
    let (status, _) = status_and_body(
        app.admin(Method::GET, "/api/v1/admin/apps/shop", None)
            .await,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = status_and_body(
        app.admin(
            Method::GET,
            &format!("/api/v1/admin/scripts/{script_id}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    let r = app
        .on_host("shop", Method::GET, "/hi")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404, "the deleted app no longer answers");
    let again = app.create_app("shop").await;
    assert_ne!(again["id"], id.as_str());
    let r = app
        .on_host("shop", Method::GET, "/hi")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 404, "a new app of the same slug starts empty");
    app.shutdown().await;
}

async fn scripts_and_routes(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let created = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "hello", "source": "\"hi\""})),
            201,
        )
        .await;
    assert_eq!(created["kind"], "endpoint");
    assert_eq!(created["created_at"], created["updated_at"]);
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, _) = status_and_body(
        app.admin(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "hello", "source": "1"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    for (name, kind) in [
        ("bad name", "endpoint"),
        ("1x", "endpoint"),
        ("kv", "module"),
        ("with-dash", "module"),
    ] {
        let (status, body) = status_and_body(
            app.admin(
                Method::POST,
                "/api/v1/admin/apps/shop/scripts",
                Some(json!({"name": name, "kind": kind, "source": "1"})),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some("name")),
            "{name}"
        );
    }
    let (status, _) = status_and_body(
        app.admin(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "x", "kind": "library", "source": "1"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    let module = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "helpers", "kind": "module", "source": "fn twice(x) { x * 2 }"})),
            201,
        )
        .await;

    // PUT compiles and bumps updated_at; a broken source changes nothing.
    let updated = app
        .admin_ok(
            Method::PUT,
            &format!("/api/v1/admin/scripts/{id}"),
            Some(json!({"source": "\"v2\""})),
            200,
        )
        .await;
    assert_eq!(updated["source"], "\"v2\"");
    assert!(updated["updated_at"].as_str() > created["updated_at"].as_str());
    let (status, body) = status_and_body(
        app.admin(
            Method::PUT,
            &format!("/api/v1/admin/scripts/{id}"),
            Some(json!({"source": "fn ("})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["line"], 1);
    let unchanged = app
        .admin_ok(
            Method::GET,
            &format!("/api/v1/admin/scripts/{id}"),
            None,
            200,
        )
        .await;
    assert_eq!(unchanged["source"], "\"v2\"");

    // Routes.
    let routes = format!("/api/v1/admin/scripts/{id}/routes");
    let route = app
        .admin_ok(
            Method::POST,
            &routes,
            Some(json!({"method": "get", "path": "/users/{id}"})),
            201,
        )
        .await;
    assert_eq!(route["method"], "GET");
    assert_eq!(route["dispatch_mode"], "sync");
    assert_eq!(route["auth"], "public");
    let (status, body) = status_and_body(
        app.admin(
            Method::POST,
            &routes,
            Some(json!({"method": "GET", "path": "/users/{name}"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("GET /users/{id}"));
    let (status, _) = status_and_body(
        app.admin(
            Method::POST,
            &routes,
            Some(json!({"method": "ANY", "path": "/users/{x}"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    for (method, path, field) in [
        ("FETCH", "/x", "method"),
        ("GET", "x", "path"),
        ("GET", "/a/{*rest}/b", "path"),
        ("GET", "/a/{id}/{id}", "path"),
    ] {
        let (status, body) = status_and_body(
            app.admin(
                Method::POST,
                &routes,
                Some(json!({"method": method, "path": path})),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{method} {path}"
        );
    }
    let module_routes = format!(
        "/api/v1/admin/scripts/{}/routes",
        module["id"].as_str().expect("id")
    );
    let (status, _) = status_and_body(
        app.admin(
            Method::POST,
            &module_routes,
            Some(json!({"method": "GET", "path": "/m"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "a module cannot be routed");
    let listed = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/routes", None, 200)
        .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let route_id = route["id"].as_str().expect("id");
    app.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/routes/{route_id}"),
        None,
        204,
    )
    .await;
    let (status, _) = status_and_body(
        app.admin(
            Method::DELETE,
            &format!("/api/v1/admin/routes/{route_id}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    for bogus in [
        "/api/v1/admin/scripts/nope",
        "/api/v1/admin/scripts/app_01m8dm7yk29bj7wyhg06hhg94d",
    ] {
        let (status, _) = status_and_body(app.admin(Method::GET, bogus, None).await).await;
        assert_eq!(status, 404, "{bogus}");
    }
    app.shutdown().await;
}

async fn meta_endpoints(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let get = |path: &'static str| {
        let req = app.client.get(app.url(path));
        async move { req.send().await.expect("request") }
    };
    let r = get("/healthz").await;
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"status": "ok"})
    );
    assert_eq!(get("/readyz").await.status(), 200);
    let doc: Value = get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/api/v1/admin/apps"]["post"].is_object());
    assert!(doc["components"]["schemas"]["AppDto"].is_object());
    let sdk: Value = get("/api/v1/sdk").await.json().await.expect("json");
    let names: Vec<&str> = sdk["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    for ns in [
        "log", "regex", "random", "time", "json", "base64", "hex", "url",
    ] {
        assert!(names.contains(&ns), "sdk lists {ns}: {names:?}");
    }
    app.deploy("shop", "GET", "/hi", "\"hi\"").await;
    app.on_host("shop", Method::GET, "/hi")
        .send()
        .await
        .expect("r");
    app.on_host("shop", Method::GET, "/missing")
        .send()
        .await
        .expect("r");
    app.executions("shop", 1).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"picloud_http_requests_total{app="shop",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"picloud_http_requests_total{app="shop",status="404"} 1"#));
    assert!(metrics.contains("picloud_http_request_duration_seconds_bucket"));
    assert!(metrics.contains(r#"picloud_executions_total{status="ok"} 1"#));
    assert!(metrics.contains("picloud_executor_queue_depth 0"));
    // The dashboard page is served.
    let r = get("/_/").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("html").contains("PiCloud"));
    let r = get("/no/such/page").await;
    assert_eq!(r.status(), 404);
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    apps_crud_validation_pagination => apps,
    scripts_and_routes_crud => scripts_and_routes,
    health_metrics_openapi_sdk => meta_endpoints,
);
