//! Modules against a real store: constants computed from imports, one evaluation per
//! version, what a module's top level may not do, and how a hostile one ends.

use std::sync::Arc;
use std::time::Duration;

use picloud_core::config::{Config, ScriptLimits};
use picloud_core::model::ScriptKind;
use picloud_core::AppId;
use picloud_services::http::TestHosts;
use picloud_services::{CallContext, HttpService, Services};
use picloud_store::{NewApp, NewScript, Script, ScriptPatch, Store};
use picloud_store_sqlite::SqliteStore;
use rhai::Dynamic;

use crate::{
    AppRef, FailureKind, Limit, RunInput, ScriptEngine, ScriptFailure, ScriptRef, ServiceAccess,
};

/// An app on a SQLite store, and an engine whose runs reach it.
struct TestApp {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    services: Arc<Services>,
    app: AppId,
    engine: ScriptEngine,
}

impl TestApp {
    fn new() -> Self {
        Self::with_limits(ScriptLimits::default())
    }

    fn with_limits(limits: ScriptLimits) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> = Arc::new(
            rt.block_on(SqliteStore::open(&dir.path().join("t.db")))
                .expect("store"),
        );
        let app = rt
            .block_on(store.create_app(NewApp {
                slug: "shop".into(),
                name: "Shop".into(),
            }))
            .expect("app")
            .id;
        let config = Config::defaults();
        let http = HttpService::new(&config.http, TestHosts::default());
        let blobs = picloud_blob::FsStore::open(&dir.path().join("files")).expect("blobs");
        let files = picloud_services::FilesService::new(
            store.clone(),
            Arc::new(blobs),
            &config.events,
            &config.files,
        );
        let secrets = picloud_services::SecretsService::new(
            store.clone(),
            Arc::new(picloud_core::envelope::Keyring::new(
                picloud_core::crypto::SecretKey::generate(),
                None,
            )),
            config.secrets.max_value_bytes,
        );
        let services = Arc::new(Services::new(
            store.clone(),
            &config.events,
            http,
            files,
            secrets,
        ));
        Self {
            rt,
            _dir: dir,
            store,
            services,
            app,
            engine: ScriptEngine::new(limits, 16, 16),
        }
    }

    /// Saves a module as it is, around the save-time checks.
    fn module(&self, name: &str, source: &str) -> Script {
        self.rt
            .block_on(self.store.create_script(NewScript {
                app_id: self.app.clone(),
                name: name.into(),
                kind: ScriptKind::Module,
                source: source.into(),
                imports: vec![],
            }))
            .expect("module")
    }

    fn edit(&self, script: &Script, source: &str) {
        self.rt
            .block_on(self.store.update_script(
                &script.id,
                ScriptPatch {
                    source: Some(source.into()),
                    ..Default::default()
                },
            ))
            .expect("edit");
    }

    fn run(&self, source: &str) -> Result<Dynamic, ScriptFailure> {
        let ast = self.engine.compile(source).expect("compiles");
        let input = RunInput {
            app: AppRef {
                id: self.app.to_string(),
                slug: "shop".into(),
            },
            script: ScriptRef {
                id: "scr_test".into(),
                name: "test".into(),
            },
            principal: None,
            request: None,
            event: None,
            execution_id: "exe_test".into(),
            attempt: 1,
            services: Some(Arc::new(ServiceAccess {
                services: self.services.clone(),
                ctx: CallContext {
                    app_id: self.app.clone(),
                    caller_scopes: None,
                    depth: 0,
                    script_id: None,
                },
                handle: self.rt.handle().clone(),
            })),
        };
        self.engine
            .run(&ast, input, Duration::from_secs(5), Ok)
            .outcome
    }

    #[track_caller]
    fn value(&self, source: &str) -> String {
        match self.run(source) {
            Ok(value) => value.to_string(),
            Err(e) => panic!("{source}: {e:?}"),
        }
    }

    #[track_caller]
    fn failure(&self, source: &str) -> ScriptFailure {
        match self.run(source) {
            Ok(value) => panic!("{source} returned {value}"),
            Err(failure) => failure,
        }
    }
}

#[test]
fn constants_may_be_computed_from_imported_constants() {
    let app = TestApp::new();
    app.module("base", "const V = 5;\nconst NAME = \"base\";\nfn f() { 2 }");
    app.module(
        "derived",
        r#"import "base" as b;
        const V = b::V + 10;
        const LIST = [b::V, V, b::f()];
        const LABEL = `${b::NAME}+${V}`;
        fn twice(x) { x * 2 }
        const T = twice(V);
        const SUM = { let s = 0; for x in LIST { s += x; } s };"#,
    );
    assert_eq!(
        app.value(r#"import "derived" as d; [d::V, d::LIST, d::LABEL, d::T, d::SUM]"#),
        r#"[15, [5, 15, 2], "base+15", 30, 22]"#
    );
    // `export` still adds names, and a constant read through a module stays as it is.
    app.module("ex", "const A = [1];\nexport A as B;");
    assert_eq!(
        app.value(r#"import "ex" as e; let a = e::B; a.push(2); [e::A, e::B, a]"#),
        "[[1], [1], [1, 2]]"
    );
    // Whatever a run does to it, the next run sees the module as it was evaluated.
    let _ = app.run(r#"import "ex" as e; e::A.push(2); e::A"#);
    assert_eq!(app.value(r#"import "ex" as e; e::A"#), "[1]");
}

/// A module's top level runs once per version of it and of what it imports: a
/// constant that differs on every evaluation shows when it ran.
#[test]
fn a_module_is_evaluated_once_per_version() {
    let app = TestApp::new();
    let base = app.module("base", "const V = 1;");
    let derived = app.module(
        "derived",
        "import \"base\" as b;\nfn nonce() { random::float() }\nconst N = nonce();\nconst V = b::V;",
    );
    let read = r#"import "derived" as d; `${d::V}/${d::N}`"#;
    let first = app.value(read);
    assert_eq!(app.value(read), first, "evaluated once");
    assert_eq!(
        app.value(r#"fn f() { import "derived" as d; d::N } `1/${f()}`"#),
        first,
        "an import inside a function gets the same module"
    );

    app.edit(&derived, "import \"base\" as b;\nfn nonce() { random::float() }\nconst N = nonce();\nconst V = b::V;\n");
    let edited = app.value(read);
    assert_ne!(edited, first, "an edit of the module evaluates it again");
    assert!(edited.starts_with("1/"));
    assert_eq!(app.value(read), edited);

    app.edit(&base, "const V = 2;");
    let rebased = app.value(read);
    assert!(rebased.starts_with("2/"), "{rebased}");
    assert_ne!(
        rebased[2..],
        edited[2..],
        "an edit of what it imports evaluates it again"
    );
    assert_eq!(app.value(read), rebased);
}

/// What the cache would keep past its bound is evaluated on every import instead.
#[test]
fn a_large_module_is_not_kept() {
    let app = TestApp::new();
    app.module(
        "big",
        r#"fn nonce() { random::float() }
        fn big() { let a = []; for i in 0..3 { let s = ""; s.pad(1000000, "x"); a.push(s); } a }
        const BIG = big();
        const N = nonce();"#,
    );
    let read = r#"import "big" as b; `${b::BIG.len()}/${b::N}`"#;
    let first = app.value(read);
    assert!(first.starts_with("3/"));
    assert_ne!(app.value(read), first);
}

#[test]
fn sdk_calls_at_a_module_top_level_are_refused_on_save() {
    let app = TestApp::new();
    let check = |source: &str| app.engine.check(source, ScriptKind::Module);
    for (source, call, line) in [
        (
            "const X = kv::collection(\"c\").get(\"k\");",
            "kv::collection",
            1,
        ),
        ("fn f() { 1 }\nconst T = time::now_ms();", "time::now_ms", 2),
        (
            "const X = { let r = http::get(\"https://example.com\"); r };",
            "http::get",
            1,
        ),
        (
            "const X = [1, docs::collection(\"d\")];",
            "docs::collection",
            1,
        ),
        ("const P = print(\"loaded\");", "print", 1),
        (
            "import \"base\" as b;\nconst D = dead_letters::list();",
            "dead_letters::list",
            2,
        ),
    ] {
        let e = check(source).expect_err(source);
        assert!(
            e.message.contains(&format!("`{call}`")) && e.message.contains("`fn`"),
            "{source}: {e:?}"
        );
        assert_eq!(e.line, Some(line), "{source}: {e:?}");
    }
    // Any other constant expression is fine: its own functions, an import's.
    for source in [
        "fn g() { 1 }\nconst B = g();",
        "import \"base\" as b;\nconst V = b::V + 10;\nconst W = b::f(V);",
        "const S = \"a\".to_upper() + 1.to_string();",
        "fn f() { kv::collection(\"c\").get(\"k\") }",
    ] {
        check(source).unwrap_or_else(|e| panic!("{source}: {e:?}"));
    }
    let e = check("const A = 1;\nlet b = A;").expect_err("let");
    assert!(e.message.contains("may only hold"), "{e:?}");
}

/// A function a module's constant calls cannot reach the services either; the same
/// function called by the script at run time can.
#[test]
fn a_service_call_while_a_module_loads_is_refused() {
    let app = TestApp::new();
    app.module(
        "reader",
        "fn read() { kv::collection(\"c\").get(\"k\") }\nconst X = read();",
    );
    let failure = app.failure(r#"import "reader" as r; r::X"#);
    assert_eq!(failure.kind, FailureKind::Error);
    assert!(
        failure
            .message
            .contains("kv: not available while module \"reader\" loads"),
        "{failure:?}"
    );
    assert!(failure.message.contains("reader"), "{failure:?}");
    assert_eq!(failure.line, Some(1));
    // Caught, it is the service's message.
    let caught =
        app.value(r#"let out = (); try { import "reader" as r; out = r::X; } catch (e) { out = `${e}`; } out"#);
    assert!(
        caught.starts_with("kv: not available while module"),
        "{caught}"
    );

    app.module("lazy", "fn read() { kv::collection(\"c\").get(\"k\") }");
    assert_eq!(
        app.value(r#"import "lazy" as l; kv::collection("c").set("k", 7); l::read()"#),
        "7"
    );
}

/// A hostile module's top level ends at the importing run's limits, as an error of
/// that run naming the limit, and is never kept.
#[test]
fn a_hostile_module_top_level_ends_at_the_runs_limits() {
    let app = TestApp::with_limits(ScriptLimits {
        max_operations: 200_000,
        max_memory_bytes: 16 << 20,
        ..ScriptLimits::default()
    });
    app.module("spin", "fn spin() { loop { } }\nconst X = spin();");
    app.module("deep", "fn down(n) { down(n + 1) }\nconst X = down(0);");
    app.module(
        "hog",
        r#"fn hog() { let a = []; loop { let s = ""; s.pad(1000000, "x"); a.push(s); } }
        const X = hog();"#,
    );
    app.module(
        "thrower",
        "fn boom() { throw \"no luck\" }\nconst X = boom();",
    );
    for (module, kind) in [
        ("spin", FailureKind::LimitExceeded(Limit::Operations)),
        ("deep", FailureKind::LimitExceeded(Limit::CallDepth)),
        ("hog", FailureKind::LimitExceeded(Limit::Memory)),
        ("thrower", FailureKind::Error),
    ] {
        let script = format!("let a = 1;\nimport \"{module}\" as m;\nm::X");
        for _ in 0..2 {
            let failure = app.failure(&script);
            assert_eq!(failure.kind, kind, "{module}: {failure:?}");
            assert_eq!(failure.line, Some(2), "{module}: {failure:?}");
        }
    }
    let failure = app.failure("import \"thrower\" as m;");
    assert!(
        failure.message.contains("no luck") && failure.message.contains("module 'thrower'"),
        "{failure:?}"
    );
    // Catching the import's error does not get past a limit.
    let failure = app.failure(r#"try { import "spin" as m; m::X } catch { } loop { }"#);
    assert_eq!(failure.kind, FailureKind::LimitExceeded(Limit::Operations));
}

/// The call-depth limit holds for the run as a whole: a module's top level goes on
/// from the depth of the import.
#[test]
fn a_module_top_level_counts_the_importers_call_depth() {
    let app = TestApp::new();
    app.module(
        "nested",
        "fn down(n) { if n == 0 { 0 } else { down(n - 1) } }\nconst X = down(20);",
    );
    let at = |depth: u32| {
        format!(
            "fn f(n) {{ if n == 0 {{ import \"nested\" as m; m::X }} else {{ f(n - 1) }} }}\nf({depth})"
        )
    };
    let failure = app.failure(&at(60));
    assert_eq!(
        failure.kind,
        FailureKind::LimitExceeded(Limit::CallDepth),
        "{failure:?}"
    );
    assert_eq!(app.value(&at(10)), "0");
}

/// The import-depth limit counts the chain below a kept module too: whether a module
/// was evaluated before never decides whether an import is allowed.
#[test]
fn a_kept_module_still_counts_its_import_depth() {
    let app = TestApp::new();
    app.module("c1", "const V = 1;");
    for i in 2..=9 {
        app.module(
            &format!("c{i}"),
            &format!("import \"c{}\" as p;\nconst V = p::V + 1;", i - 1),
        );
    }
    assert_eq!(app.value("import \"c8\" as m; m::V"), "8");
    for _ in 0..2 {
        let failure = app.failure("import \"c9\" as m; m::V");
        assert!(
            failure.message.contains("deeper than 8")
                && failure
                    .message
                    .contains("c9 → c8 → c7 → c6 → c5 → c4 → c3 → c2 → c1"),
            "{failure:?}"
        );
    }
    // Only the chain from the importer counts: c8 imported on its own is fine.
    assert_eq!(
        app.value("import \"c1\" as c; fn f() { import \"c8\" as m; m::V } f() + c::V"),
        "9"
    );
}
