//! Conformance cases for writes that share a commit: KV sets and deletes and document
//! creates from concurrent callers are committed together by the store's group-commit
//! writer, yet each caller hears its own result and a failing write fails alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::future::join_all;
use picloud_core::model::{DocsOp, KvOp};
use picloud_core::AppId;
use picloud_store::{NewTrigger, Store, StoreError, TriggerConfig};
use serde_json::json;

use crate::conformance_events::{app_with_script, cause, claim_all, kv_trigger};

/// Writers started together, so that they queue behind one another's commit.
const WRITERS: usize = 48;

pub async fn concurrent_writers_each_hear_their_own_result(store: Arc<dyn Store>) {
    let (app, _) = app_with_script(&store, "shop").await;
    // Distinct keys: every write is the first of its key.
    let outcomes = join_all((0..WRITERS).map(|i| {
        let store = store.clone();
        let app = app.clone();
        async move {
            store
                .kv_set(&app, "c", &format!("k{i}"), &json!(i), &cause(0))
                .await
        }
    }))
    .await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.unwrap_or_else(|e| panic!("set k{i}: {e}"));
        assert_eq!(outcome.prev, None, "k{i} had no value before");
        let got = store
            .kv_get(&app, "c", &format!("k{i}"))
            .await
            .expect("get")
            .expect("written before the call returned");
        assert_eq!(got.value, json!(i));
    }

    // One key: the writes are ordered, and each one's `prev` is the value it replaced,
    // so the previous values are every value but the last, and one write saw none.
    let outcomes = join_all((0..WRITERS).map(|i| {
        let store = store.clone();
        let app = app.clone();
        async move { store.kv_set(&app, "c", "same", &json!(i), &cause(0)).await }
    }))
    .await;
    let mut prevs = BTreeSet::new();
    let mut firsts = 0;
    for outcome in outcomes {
        match outcome.expect("set same").prev {
            Some(prev) => {
                assert!(prevs.insert(prev.as_i64().expect("a number")), "prev twice");
            }
            None => firsts += 1,
        }
    }
    assert_eq!(firsts, 1, "exactly one write found the key empty");
    let last = store
        .kv_get(&app, "c", "same")
        .await
        .expect("get")
        .expect("present")
        .value
        .as_i64()
        .expect("a number");
    assert!(
        !prevs.contains(&last),
        "the last value was replaced by none"
    );
    prevs.insert(last);
    assert_eq!(prevs.len(), WRITERS, "every value was written once");

    // Deletes and creates share commits too; each reports its own.
    let deletes = join_all((0..WRITERS).map(|i| {
        let store = store.clone();
        let app = app.clone();
        async move {
            let key = format!("k{}", i % (WRITERS / 2));
            store.kv_delete(&app, "c", &key, &cause(0)).await
        }
    }))
    .await;
    let removed = deletes
        .into_iter()
        .map(|d| d.expect("delete"))
        .filter(|d| d.prev.is_some())
        .count();
    assert_eq!(
        removed,
        WRITERS / 2,
        "each key was removed by exactly one delete"
    );
    let creates = join_all((0..WRITERS).map(|i| {
        let store = store.clone();
        let app = app.clone();
        async move {
            store
                .docs_create(&app, "d", &json!({"i": i}), &cause(0))
                .await
        }
    }))
    .await;
    let mut ids = BTreeSet::new();
    for (i, created) in creates.into_iter().enumerate() {
        let (doc, _) = created.expect("create");
        assert_eq!(
            doc.data,
            json!({"i": i}),
            "each caller gets its own document"
        );
        let got = store
            .docs_get(&app, "d", &doc.id)
            .await
            .expect("get")
            .expect("created before the call returned");
        assert_eq!(got.data, json!({"i": i}));
        assert!(ids.insert(doc.id.as_str().to_owned()));
    }
}

pub async fn a_failing_write_fails_alone(store: Arc<dyn Store>) {
    let (app, _) = app_with_script(&store, "shop").await;
    let gone = AppId::new();
    // Every third write is for an app that does not exist: it fails, its neighbours
    // (likely in the same commit) are written.
    let outcomes = join_all((0..WRITERS).map(|i| {
        let store = store.clone();
        let target = if i % 3 == 1 {
            gone.clone()
        } else {
            app.clone()
        };
        async move {
            if i % 2 == 0 {
                store
                    .kv_set(&target, "c", &format!("k{i}"), &json!(i), &cause(0))
                    .await
                    .map(drop)
            } else {
                store
                    .docs_create(&target, "d", &json!({"i": i}), &cause(0))
                    .await
                    .map(drop)
            }
        }
    }))
    .await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if i % 3 == 1 {
            assert!(
                matches!(outcome, Err(StoreError::NotFound)),
                "write {i} for a missing app: {outcome:?}"
            );
        } else {
            outcome.unwrap_or_else(|e| panic!("write {i} failed with its neighbour: {e}"));
        }
    }
    for i in (0..WRITERS).filter(|i| i % 2 == 0) {
        let got = store
            .kv_get(&app, "c", &format!("k{i}"))
            .await
            .expect("get");
        assert_eq!(got.is_some(), i % 3 != 1, "k{i}");
        let other = store
            .kv_get(&gone, "c", &format!("k{i}"))
            .await
            .expect("get");
        assert_eq!(other, None, "nothing of the failed write is left");
    }
}

pub async fn shared_commits_queue_each_writes_events(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    kv_trigger(&store, &app, &script, "orders", vec![KvOp::Set]).await;
    store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: None,
            config: TriggerConfig::Docs {
                collection: "notes".into(),
                ops: vec![DocsOp::Create],
            },
        })
        .await
        .expect("docs trigger");
    let half = WRITERS / 2;
    let outcomes = join_all((0..WRITERS).map(|i| {
        let store = store.clone();
        let app = app.clone();
        async move {
            if i < half {
                store
                    .kv_set(&app, "orders", &format!("o{i}"), &json!(i), &cause(0))
                    .await
            } else {
                store
                    .docs_create(&app, "notes", &json!({"i": i}), &cause(0))
                    .await
                    .map(|(_, o)| o)
            }
        }
    }))
    .await;
    for outcome in outcomes {
        assert_eq!(outcome.expect("write").events.len(), 1, "one delivery each");
    }
    let claimed = claim_all(&store).await;
    assert_eq!(
        claimed.len(),
        WRITERS,
        "every write's delivery committed with it"
    );
    let kv_keys: BTreeSet<String> = claimed
        .iter()
        .filter_map(|e| e.payload["kv"]["key"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kv_keys.len(), half);
}
