//! Conformance cases for modules: the import graph written with the script, and the
//! rules that keep it pointing at modules that exist.

use std::sync::Arc;

use picloud_core::model::ScriptKind;
use picloud_core::AppId;
use picloud_store::{NewApp, NewScript, Script, ScriptPatch, Store, StoreError};

async fn app(store: &Arc<dyn Store>, slug: &str) -> AppId {
    store
        .create_app(NewApp {
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .expect("create app")
        .id
}

async fn create(
    store: &Arc<dyn Store>,
    app: &AppId,
    name: &str,
    kind: ScriptKind,
    imports: &[&str],
) -> Result<Script, StoreError> {
    store
        .create_script(NewScript {
            app_id: app.clone(),
            name: name.into(),
            kind,
            source: "fn f() { 1 }".into(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
        })
        .await
}

fn edges(list: &[picloud_store::ImportEdge]) -> Vec<(String, String)> {
    list.iter()
        .map(|e| (e.script_name.clone(), e.module.clone()))
        .collect()
}

pub async fn imports_are_recorded_with_the_script(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    let util = create(&store, &shop, "util", ScriptKind::Module, &[])
        .await
        .expect("module");
    let math = create(&store, &shop, "math", ScriptKind::Module, &["util"])
        .await
        .expect("module importing a module");
    let api = create(
        &store,
        &shop,
        "api",
        ScriptKind::Endpoint,
        &["math", "util"],
    )
    .await
    .expect("endpoint");
    create(&store, &other, "util", ScriptKind::Module, &[])
        .await
        .expect("same name, other app");

    let graph = store.import_edges(&shop).await.expect("edges");
    assert_eq!(
        edges(&graph),
        [("api", "math"), ("api", "util"), ("math", "util")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(store.import_edges(&other).await.expect("edges").is_empty());

    // Lookups are per app and per kind.
    assert_eq!(store.get_module(&shop, "util").await.expect("get"), util);
    assert!(matches!(
        store.get_module(&shop, "api").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_module(&shop, "nope").await,
        Err(StoreError::NotFound)
    ));
    let theirs = store.get_module(&other, "util").await.expect("theirs");
    assert_ne!(theirs.id, util.id);

    // A source change replaces the edges; `None` keeps them.
    store
        .update_script(
            &api.id,
            ScriptPatch {
                source: Some("1".into()),
                imports: Some(vec!["util".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    store
        .update_script(&math.id, ScriptPatch::default())
        .await
        .expect("touch");
    let graph = store.import_edges(&shop).await.expect("edges");
    assert_eq!(
        edges(&graph),
        [("api", "util"), ("math", "util")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

pub async fn imported_modules_cannot_vanish(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    create(&store, &other, "theirs", ScriptKind::Module, &[])
        .await
        .expect("module");
    let util = create(&store, &shop, "util", ScriptKind::Module, &[])
        .await
        .expect("module");
    let endpoint = create(&store, &shop, "page", ScriptKind::Endpoint, &[])
        .await
        .expect("endpoint");

    // Importing what the app does not have writes nothing.
    for missing in ["nope", "theirs", "page"] {
        let refused = create(
            &store,
            &shop,
            "api",
            ScriptKind::Endpoint,
            &["util", missing],
        )
        .await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains(missing)),
            "{missing}: {refused:?}"
        );
    }
    assert!(store.import_edges(&shop).await.expect("edges").is_empty());
    let refused = store
        .update_script(
            &endpoint.id,
            ScriptPatch {
                source: Some("2".into()),
                imports: Some(vec!["nope".into()]),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let unchanged = store.get_script(&endpoint.id).await.expect("get");
    assert_eq!(
        unchanged.source, "fn f() { 1 }",
        "a refused update writes nothing"
    );

    let api = create(&store, &shop, "api", ScriptKind::Endpoint, &["util"])
        .await
        .expect("endpoint");
    let jobs = create(&store, &shop, "jobs", ScriptKind::Endpoint, &["util"])
        .await
        .expect("endpoint");

    // Deleting or renaming an imported module is a conflict naming the importers.
    for result in [
        store.delete_script(&util.id).await.map(drop),
        store
            .update_script(
                &util.id,
                ScriptPatch {
                    name: Some("utils".into()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
    ] {
        match result {
            Err(StoreError::Conflict(m)) => {
                assert!(m.contains("\"api\"") && m.contains("\"jobs\""), "{m}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    // Its source may change, and keeping its name is no rename.
    store
        .update_script(
            &util.id,
            ScriptPatch {
                name: Some("util".into()),
                source: Some("fn f() { 2 }".into()),
                ..Default::default()
            },
        )
        .await
        .expect("edit an imported module");

    // Once nothing imports it, it can go; an importer's edges go with the importer.
    store.delete_script(&api.id).await.expect("delete importer");
    store
        .update_script(
            &jobs.id,
            ScriptPatch {
                imports: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .expect("drop the import");
    assert!(store.import_edges(&shop).await.expect("edges").is_empty());
    store.delete_script(&util.id).await.expect("delete module");
}

/// The store itself refuses a cycle, inside the write: two saves racing past the API's
/// check cannot build one.
pub async fn import_cycles_are_refused_in_the_write(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let a = create(&store, &shop, "a", ScriptKind::Module, &[])
        .await
        .expect("a");
    create(&store, &shop, "b", ScriptKind::Module, &["a"])
        .await
        .expect("b");
    let c = create(&store, &shop, "c", ScriptKind::Module, &["b"])
        .await
        .expect("c");
    let refused = store
        .update_script(
            &a.id,
            ScriptPatch {
                source: Some("import \"c\" as c;".into()),
                imports: Some(vec!["c".into()]),
                ..Default::default()
            },
        )
        .await;
    match refused {
        Err(StoreError::Invalid(m)) => assert_eq!(m, "circular import: a → c → b → a"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let unchanged = store.get_script(&a.id).await.expect("a");
    assert_eq!(unchanged.source, "fn f() { 1 }", "nothing was written");
    // An endpoint is never part of a cycle: nothing imports it.
    create(&store, &shop, "page", ScriptKind::Endpoint, &["c", "a"])
        .await
        .expect("endpoint importing the chain");
    let _ = c;
}
