//! Conformance cases for file metadata and durable publish: rows with their events in
//! one transaction, paging, isolation, the blob keys the sweeper keeps, and pubsub
//! fan-out by pattern.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use picloud_core::model::{ExecutionSource, FilesOp, ScriptKind};
use picloud_core::{AppId, FileId, ScriptId};
use picloud_store::{
    EventCause, FileUpdate, NewApp, NewBytes, NewFile, NewScript, NewTrigger, OutboxEvent,
    PageRequest, RetryPolicy, Store, StoreError, TriggerConfig,
};
use serde_json::json;

const CAUSE: EventCause = EventCause {
    depth: 0,
    max_depth: 8,
    default_retry: RetryPolicy {
        max_attempts: 3,
        base_delay_ms: 10,
        max_delay_ms: 100,
    },
};

async fn app(store: &Arc<dyn Store>, slug: &str) -> AppId {
    store
        .create_app(NewApp {
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .expect("app")
        .id
}

async fn endpoint(store: &Arc<dyn Store>, app: &AppId, name: &str) -> ScriptId {
    store
        .create_script(NewScript {
            app_id: app.clone(),
            name: name.into(),
            kind: ScriptKind::Endpoint,
            source: "()".into(),
            imports: vec![],
        })
        .await
        .expect("script")
        .id
}

async fn trigger(
    store: &Arc<dyn Store>,
    app: &AppId,
    name: &str,
    config: TriggerConfig,
) -> ScriptId {
    let script = endpoint(store, app, name).await;
    let created = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: None,
            config: config.clone(),
        })
        .await
        .expect("trigger");
    assert_eq!(created.config, config);
    script
}

fn new_file(collection: &str, name: &str, key: &str) -> NewFile {
    NewFile {
        id: FileId::new(),
        collection: collection.into(),
        name: name.into(),
        content_type: "text/plain".into(),
        size: 5,
        checksum: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
        blob_key: key.into(),
    }
}

async fn claim_all(store: &Arc<dyn Store>) -> Vec<OutboxEvent> {
    store
        .claim_events(
            picloud_core::now() + Duration::seconds(1),
            500,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim")
}

pub async fn files_crud_and_events(store: Arc<dyn Store>) {
    let a = app(&store, "shop").await;
    let all = trigger(
        &store,
        &a,
        "all",
        TriggerConfig::Files {
            collection: "avatars".into(),
            ops: vec![FilesOp::Create, FilesOp::Update, FilesOp::Delete],
        },
    )
    .await;
    let deletes = trigger(
        &store,
        &a,
        "deletes",
        TriggerConfig::Files {
            collection: "avatars".into(),
            ops: vec![FilesOp::Delete],
        },
    )
    .await;

    let (created, out) = store
        .files_create(&a, new_file("avatars", "me.png", "k/1"), &CAUSE)
        .await
        .expect("create");
    assert_eq!(out.events.len(), 1);
    assert_eq!(created.name, "me.png");
    let head = store
        .files_head(&a, "avatars", &created.id)
        .await
        .expect("head")
        .expect("present");
    assert_eq!(head, created);
    // Another collection of the same app does not see it.
    assert!(store
        .files_head(&a, "other", &created.id)
        .await
        .expect("head")
        .is_none());

    let (after, before, out) = store
        .files_update(
            &a,
            "avatars",
            &created.id,
            &FileUpdate {
                name: Some("me2.png".into()),
                content_type: None,
                bytes: Some(NewBytes {
                    size: 9,
                    checksum: "ab".repeat(32),
                    blob_key: "k/2".into(),
                }),
            },
            &CAUSE,
        )
        .await
        .expect("update");
    assert_eq!(before, created);
    assert_eq!((after.name.as_str(), after.size), ("me2.png", 9));
    assert_eq!(after.content_type, "text/plain");
    assert_eq!(after.blob_key, "k/2");
    assert!(after.updated_at >= created.updated_at);
    assert_eq!(after.created_at, created.created_at);
    assert_eq!(out.events.len(), 1);

    let missing = store
        .files_update(
            &a,
            "avatars",
            &FileId::new(),
            &FileUpdate::default(),
            &CAUSE,
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    let (gone, out) = store
        .files_delete(&a, "avatars", &created.id, &CAUSE)
        .await
        .expect("delete");
    assert_eq!(gone.as_ref(), Some(&after));
    assert_eq!(out.events.len(), 2);
    let (again, out) = store
        .files_delete(&a, "avatars", &created.id, &CAUSE)
        .await
        .expect("delete");
    assert!(again.is_none() && out.events.is_empty());

    let events = claim_all(&store).await;
    assert_eq!(events.len(), 4);
    let to_all: Vec<_> = events.iter().filter(|e| e.script_id == all).collect();
    assert!(events.iter().all(|e| e.source == ExecutionSource::Files));
    assert_eq!(to_all.len(), 3);
    assert_eq!(
        to_all[0].payload,
        json!({"source": "files", "op": "create",
               "files": {"collection": "avatars", "file": created.to_json(), "prev": null}})
    );
    assert_eq!(
        to_all[1].payload,
        json!({"source": "files", "op": "update",
               "files": {"collection": "avatars", "file": after.to_json(),
                         "prev": created.to_json()}})
    );
    assert_eq!(to_all[2].payload["op"], "delete");
    assert_eq!(to_all[2].payload["files"]["prev"], after.to_json());
    // Metadata only: no blob key, no bytes.
    assert!(to_all[0].payload["files"]["file"].get("blob_key").is_none());
    assert_eq!(events.iter().filter(|e| e.script_id == deletes).count(), 1);

    // Past the depth limit, the row is written and nothing is queued.
    let deep = EventCause { depth: 8, ..CAUSE };
    let (_, out) = store
        .files_create(&a, new_file("avatars", "deep", "k/3"), &deep)
        .await
        .expect("create");
    assert!(out.events.is_empty() && out.skipped_for_depth == 1);
}

pub async fn files_list_page_isolate_and_known_blobs(store: Arc<dyn Store>) {
    let a = app(&store, "one").await;
    let b = app(&store, "two").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let collection = if i % 2 == 0 { "even" } else { "odd" };
        let (f, _) = store
            .files_create(
                &a,
                new_file(collection, &format!("f{i}"), &format!("a/{i}")),
                &CAUSE,
            )
            .await
            .expect("create");
        ids.push(f.id);
    }
    let (other, _) = store
        .files_create(&b, new_file("even", "theirs", "b/0"), &CAUSE)
        .await
        .expect("create");

    // All of the app's files in creation order, two per page.
    let mut seen = Vec::new();
    let mut page = PageRequest {
        limit: 2,
        after: None,
    };
    loop {
        let got = store.files_list(&a, None, &page).await.expect("list");
        seen.extend(got.items.iter().map(|f| f.id.clone()));
        match got.next_cursor {
            Some(cursor) => page.after = picloud_store::Cursor::decode(cursor.as_str()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let even = store
        .files_list(&a, Some("even"), &PageRequest::default())
        .await
        .expect("list");
    let names: Vec<_> = even.items.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["f0", "f2", "f4"]);

    // Isolation: app b's file is invisible to app a, by id too.
    assert!(store
        .files_head(&a, "even", &other.id)
        .await
        .expect("head")
        .is_none());
    let (gone, _) = store
        .files_delete(&a, "even", &other.id, &CAUSE)
        .await
        .expect("delete");
    assert!(gone.is_none());
    assert!(store
        .files_head(&b, "even", &other.id)
        .await
        .expect("head")
        .is_some());

    // A blob key names one file only.
    let dup = store
        .files_create(&b, new_file("even", "dup", "b/0"), &CAUSE)
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let known = store
        .files_known_blobs(&["a/0".into(), "a/9".into(), "b/0".into(), "zzz".into()])
        .await
        .expect("known");
    assert_eq!(known, HashSet::from(["a/0".to_owned(), "b/0".to_owned()]));
    assert!(store
        .files_known_blobs(&[])
        .await
        .expect("known")
        .is_empty());

    // A deleted app takes its rows with it: their blobs become orphans.
    store.delete_app(&a).await.expect("delete app");
    let known = store
        .files_known_blobs(&["a/0".into(), "b/0".into()])
        .await
        .expect("known");
    assert_eq!(known, HashSet::from(["b/0".to_owned()]));
    let ghost = store
        .files_create(&a, new_file("even", "late", "a/late"), &CAUSE)
        .await;
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");
}

pub async fn pubsub_fans_out_by_pattern(store: Arc<dyn Store>) {
    let a = app(&store, "pub").await;
    let b = app(&store, "other").await;
    let pubsub = |topic: &str| TriggerConfig::Pubsub {
        topic: topic.into(),
    };
    let exact = trigger(&store, &a, "exact", pubsub("orders")).await;
    let prefix = trigger(&store, &a, "prefix", pubsub("orders.*")).await;
    let every = trigger(&store, &a, "every", pubsub("*")).await;
    let _theirs = trigger(&store, &b, "theirs", pubsub("*")).await;

    let bad = store
        .create_trigger(NewTrigger {
            app_id: a.clone(),
            script_id: exact.clone(),
            retry: None,
            config: pubsub("orders.*.new"),
        })
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");

    let message = json!({"id": 7, "nested": {"blob": "AAE="}});
    let out = store
        .publish_durable(&a, "orders.eu.new", &message, &CAUSE)
        .await
        .expect("publish");
    assert_eq!(out.events.len(), 2);
    let out = store
        .publish_durable(&a, "orders", &message, &CAUSE)
        .await
        .expect("publish");
    assert_eq!(out.events.len(), 2);
    let events = claim_all(&store).await;
    assert_eq!(events.len(), 4);
    assert!(events
        .iter()
        .all(|e| e.app_id == a && e.source == ExecutionSource::Pubsub));
    let scripts: Vec<_> = events.iter().map(|e| e.script_id.clone()).collect();
    assert_eq!(scripts.iter().filter(|s| **s == every).count(), 2);
    assert_eq!(scripts.iter().filter(|s| **s == prefix).count(), 1);
    assert_eq!(scripts.iter().filter(|s| **s == exact).count(), 1);
    let first = &events[0].payload;
    assert_eq!(first["source"], "pubsub");
    assert_eq!(first["op"], "publish");
    assert_eq!(first["pubsub"]["message"], message);
    assert!(first["pubsub"]["published_at"].is_string());
    // Each subscriber has its own delivery (own id, own retries).
    let ids: HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 4);

    // No subscriber: success, nothing written.
    let c = app(&store, "quiet").await;
    let out = store
        .publish_durable(&c, "orders", &message, &CAUSE)
        .await
        .expect("publish");
    assert!(out.events.is_empty());
    assert_eq!(store.count_events(&c).await.expect("count"), 0);

    // A disabled subscriber gets nothing.
    let list = store
        .list_triggers(&a, &PageRequest::default())
        .await
        .expect("list");
    for t in &list.items {
        store
            .set_trigger_enabled(&a, &t.id, false)
            .await
            .expect("disable");
    }
    let out = store
        .publish_durable(&a, "orders", &message, &CAUSE)
        .await
        .expect("publish");
    assert!(out.events.is_empty());
}
