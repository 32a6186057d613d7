//! Conformance cases for documents: the query-semantics table, writes with their
//! events, patches, paging and app isolation.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use picloud_core::model::{DocsOp, ExecutionSource, ScriptKind};
use picloud_core::{AppId, DocId, ScriptId};
use picloud_store::{
    Condition, EventCause, NewApp, NewScript, NewTrigger, PageRequest, Patch, Query, RetryPolicy,
    Store, StoreError, TriggerConfig,
};
use serde_json::{json, Value};

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

/// The documents every query case runs against, created in this order (which is the
/// order of ties). Each carries its name as `label`.
fn corpus() -> Vec<Value> {
    vec![
        json!({"label": "d1", "n": 9, "s": "apple", "tier": "gold", "flag": true,
               "user": {"email": "a@x.io", "age": 30}, "tags": ["a", "b"]}),
        json!({"label": "d2", "n": 10, "s": "Banana", "tier": "silver", "flag": false,
               "user": {"email": "b@x.io", "age": 25}, "tags": ["b"]}),
        json!({"label": "d3", "n": 100, "s": "cherry", "tier": "gold", "user": {"age": 41},
               "nul": null}),
        json!({"label": "d4", "n": "10", "s": "10", "tier": "bronze",
               "user": {"email": "d@x.io", "age": "41"}}),
        json!({"label": "d5", "n": 9.5, "s": "apple pie", "flag": true,
               "deep": {"a": {"b": {"c": {"d": 1}}}}}),
        json!({"label": "d6", "n": -3, "tier": "gold", "nul": 0, "user": null}),
        json!({"label": "d7", "n": 1000.0, "s": "", "tier": "GOLD",
               "obj": {"x": 1, "y": [1, 2]}, "tags": []}),
        json!({"label": "d8", "n": true, "tags": {"0": "zero"}, "user": {"email": "a@x.io"}}),
    ]
}

/// (filter, the labels it finds, in order)
fn cases() -> Vec<(Value, &'static str)> {
    vec![
        (json!({}), "d1 d2 d3 d4 d5 d6 d7 d8"),
        // Equality is typed: a number never equals a string.
        (json!({"tier": "gold"}), "d1 d3 d6"),
        (json!({"tier": {"$eq": "gold"}}), "d1 d3 d6"),
        (json!({"tier": {"$ne": "gold"}}), "d2 d4 d5 d7 d8"),
        (json!({"n": 10}), "d2"),
        (json!({"n": "10"}), "d4"),
        (json!({"n": 1000}), "d7"),
        (json!({"flag": true}), "d1 d5"),
        (json!({"flag": {"$ne": true}}), "d2 d3 d4 d6 d7 d8"),
        // Numbers compare as numbers across digit counts; strings are left out.
        (json!({"n": {"$gt": 9}}), "d2 d3 d5 d7"),
        (json!({"n": {"$gte": 9, "$lt": 100}}), "d1 d2 d5"),
        (json!({"n": {"$lt": 10}}), "d1 d5 d6"),
        (json!({"n": {"$lte": 9.5}}), "d1 d5 d6"),
        (json!({"n": {"$gt": 99, "$lt": 1001}}), "d3 d7"),
        // Strings compare as strings, byte by byte ("B" < "a"); numbers are left out.
        (json!({"s": {"$gt": "apple"}}), "d3 d5"),
        (json!({"s": {"$lt": "b"}}), "d1 d2 d4 d5 d7"),
        (json!({"n": {"$gt": "1"}}), "d4"),
        (json!({"n": {"$in": [9, "10"]}}), "d1 d4"),
        (json!({"n": {"$nin": [9, 10, 100]}}), "d4 d5 d6 d7 d8"),
        (json!({"s": {"$in": []}}), ""),
        (json!({"n": {"$nin": []}}), "d1 d2 d3 d4 d5 d6 d7 d8"),
        (json!({"tier": {"$nin": ["gold", "silver"]}}), "d4 d5 d7 d8"),
        // Arrays and maps equal only when whole and equal, not when contained.
        (json!({"tags": ["b"]}), "d2"),
        (json!({"tags": []}), "d7"),
        (json!({"obj": {"y": [1, 2], "x": 1}}), "d7"),
        (json!({"obj": {"x": 1}}), ""),
        // A map or array never equals a scalar, and the scalars (text among them) are
        // not read as JSON to find out.
        (json!({"s": ["apple"]}), ""),
        (json!({"s": {"apple": 1}}), ""),
        (json!({"n": {"$in": [[10], {"n": 10}, 9]}}), "d1"),
        (json!({"s": {"$ne": ["apple"]}}), "d1 d2 d3 d4 d5 d6 d7 d8"),
        // Dotted paths, up to five levels; a numeric segment names a key, not an index.
        (json!({"user.email": "a@x.io"}), "d1 d8"),
        (json!({"user.age": {"$gte": 30}}), "d1 d3"),
        (json!({"user.age": {"$gt": 20, "$lt": 35}}), "d1 d2"),
        (json!({"deep.a.b.c.d": 1}), "d5"),
        (json!({"tags.0": "zero"}), "d8"),
        // null matches null or missing; $exists tells them apart.
        (json!({"nul": null}), "d1 d2 d3 d4 d5 d7 d8"),
        (json!({"nul": {"$exists": true}}), "d3 d6"),
        (json!({"nul": {"$exists": false}}), "d1 d2 d4 d5 d7 d8"),
        (json!({"user": null}), "d5 d6 d7"),
        (json!({"user.email": {"$exists": false}}), "d3 d5 d6 d7"),
        // $or, and $or inside $and.
        (
            json!({"$or": [{"tier": "silver"}, {"n": {"$gt": 99}}]}),
            "d2 d3 d7",
        ),
        (
            json!({"$and": [{"tier": "gold"}, {"$or": [{"n": 9}, {"n": -3}]}]}),
            "d1 d6",
        ),
        (
            json!({"tier": "gold", "$or": [{"user.age": {"$gt": 35}}, {"user": null}]}),
            "d3 d6",
        ),
        (
            json!({"$or": [{"s": ""}, {"s": {"$exists": false}}]}),
            "d6 d7 d8",
        ),
        // Sorting: missing and null, then numbers, strings, booleans; ties keep
        // creation order.
        (json!({"tier": "gold", "$sort": "-n"}), "d3 d1 d6"),
        (json!({"$sort": "n"}), "d6 d1 d5 d2 d3 d7 d4 d8"),
        (json!({"$sort": ["tier", "-n"]}), "d8 d5 d7 d4 d3 d1 d6 d2"),
        (json!({"tier": "gold", "$sort": "tier"}), "d1 d3 d6"),
        (json!({"$sort": "-s", "$limit": 2, "$skip": 1}), "d5 d1"),
        (json!({"$sort": "-s", "$skip": 5}), "d7 d6 d8"),
        (json!({"$limit": 3}), "d1 d2 d3"),
    ]
}

fn labels(docs: &[picloud_store::Doc]) -> String {
    docs.iter()
        .map(|d| d.data["label"].as_str().unwrap_or("?").to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn docs_query_semantics_table(store: Arc<dyn Store>) {
    query_semantics(store, &[]).await;
}

/// The same table with indexes declared on the fields it queries and sorts by: the
/// planner takes other paths, the answers stay the same.
pub async fn docs_query_semantics_with_declared_indexes(store: Arc<dyn Store>) {
    let fields = [
        "tier",
        "n",
        "s",
        "flag",
        "user.email",
        "user.age",
        "nul",
        "user",
        "tags",
        "obj",
    ];
    query_semantics(store, &fields).await;
}

async fn query_semantics(store: Arc<dyn Store>, indexed: &[&str]) {
    let a = app(&store, "shop").await;
    for field in indexed {
        let path = picloud_store::FieldPath::parse(field).expect("path");
        store
            .docs_create_index(&a, "things", &path)
            .await
            .expect("declare");
    }
    for data in corpus() {
        store
            .docs_create(&a, "things", &data, &CAUSE)
            .await
            .expect("create");
    }
    // Noise that no query may see: another collection.
    store
        .docs_create(&a, "other", &json!({"label": "x", "tier": "gold"}), &CAUSE)
        .await
        .expect("create");
    let mut failures = Vec::new();
    for (filter, expected) in cases() {
        let query = Query::parse(&filter).expect("filter parses");
        let found = store.docs_find(&a, "things", &query).await.expect("find");
        let got = labels(&found);
        if got != expected {
            failures.push(format!("{filter}: expected [{expected}], got [{got}]"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

pub async fn docs_crud_envelope_and_prev(store: Arc<dyn Store>) {
    let a = app(&store, "shop").await;
    let (doc, out) = store
        .docs_create(&a, "orders", &json!({"total": 5}), &CAUSE)
        .await
        .expect("create");
    assert!(doc.id.as_str().starts_with("doc_"));
    assert_eq!(doc.collection, "orders");
    assert_eq!(doc.created_at, doc.updated_at);
    assert_eq!(out.prev, None);
    let got = store
        .docs_get(&a, "orders", &doc.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got, doc);
    // A document lives in its collection only.
    assert_eq!(
        store.docs_get(&a, "other", &doc.id).await.expect("get"),
        None
    );

    let (updated, out) = store
        .docs_update(&a, "orders", &doc.id, &json!({"total": 7}), &CAUSE)
        .await
        .expect("update");
    assert_eq!(updated.data, json!({"total": 7}));
    assert_eq!(updated.created_at, doc.created_at);
    assert!(updated.updated_at >= doc.updated_at);
    assert_eq!(out.prev, Some(json!({"total": 5})));

    let missing = DocId::new();
    assert!(matches!(
        store
            .docs_update(&a, "orders", &missing, &json!({}), &CAUSE)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .docs_update(&a, "other", &doc.id, &json!({}), &CAUSE)
            .await,
        Err(StoreError::NotFound)
    ));

    let patch =
        Patch::parse(&json!({"$inc": {"total": 3, "n": 1}, "$set": {"a.b": "x"}})).expect("patch");
    let (patched, out) = store
        .docs_patch(&a, "orders", &doc.id, &patch, 1 << 20, &CAUSE)
        .await
        .expect("patch");
    assert_eq!(patched.data, json!({"total": 10, "n": 1, "a": {"b": "x"}}));
    assert_eq!(out.prev, Some(json!({"total": 7})));
    // A patch that breaks the size cap or a type writes nothing.
    let big = Patch::parse(&json!({"$set": {"blob": "x".repeat(200)}})).expect("patch");
    assert!(matches!(
        store
            .docs_patch(&a, "orders", &doc.id, &big, 100, &CAUSE)
            .await,
        Err(StoreError::Invalid(_))
    ));
    let bad = Patch::parse(&json!({"$inc": {"a.b": 1}})).expect("patch");
    match store
        .docs_patch(&a, "orders", &doc.id, &bad, 1 << 20, &CAUSE)
        .await
    {
        Err(StoreError::Invalid(message)) => assert!(message.contains("a.b"), "{message}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let now = store.docs_get(&a, "orders", &doc.id).await.expect("get");
    assert_eq!(now.map(|d| d.data), Some(patched.data.clone()));

    let out = store
        .docs_delete(&a, "orders", &doc.id, &CAUSE)
        .await
        .expect("delete");
    assert_eq!(out.prev, Some(patched.data));
    let out = store
        .docs_delete(&a, "orders", &doc.id, &CAUSE)
        .await
        .expect("delete again");
    assert_eq!(out.prev, None);
    assert_eq!(
        store.docs_get(&a, "orders", &doc.id).await.expect("get"),
        None
    );
}

pub async fn docs_list_pages_with_a_filter(store: Arc<dyn Store>) {
    let a = app(&store, "shop").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (doc, _) = store
            .docs_create(&a, "items", &json!({"i": i, "even": i % 2 == 0}), &CAUSE)
            .await
            .expect("create");
        ids.push(doc.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = store
            .docs_list(&a, "items", None, &page)
            .await
            .expect("list");
        seen.extend(got.items.iter().map(|d| d.id.clone()));
        match got.next_cursor {
            Some(cursor) => {
                page = PageRequest {
                    limit: 3,
                    after: picloud_store::Cursor::decode(cursor.as_str()),
                }
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let even = Query::parse_filter(&json!({"even": true})).expect("filter");
    let got = store
        .docs_list(&a, "items", Some(&even), &PageRequest::first(10))
        .await
        .expect("list");
    let is: Vec<_> = got.items.iter().map(|d| d.data["i"].clone()).collect();
    assert_eq!(is, vec![json!(0), json!(2), json!(4), json!(6)]);
    assert_eq!(got.next_cursor, None);
    // A cursor from elsewhere is just a position.
    let got = store
        .docs_list(
            &a,
            "items",
            Some(&Condition::All),
            &PageRequest {
                limit: 10,
                after: Some("zzz".into()),
            },
        )
        .await
        .expect("list");
    assert!(got.items.is_empty());
}

pub async fn docs_apps_are_isolated(store: Arc<dyn Store>) {
    let a = app(&store, "alpha").await;
    let b = app(&store, "beta").await;
    let (doc, _) = store
        .docs_create(&a, "users", &json!({"email": "a@x.io", "n": 1}), &CAUSE)
        .await
        .expect("create");
    for filter in [
        json!({}),
        json!({"email": "a@x.io"}),
        json!({"n": {"$gte": 0}}),
        json!({"$or": [{"email": {"$exists": true}}, {"email": {"$exists": false}}]}),
        json!({"n": {"$nin": []}}),
    ] {
        let query = Query::parse(&filter).expect("filter");
        assert!(store
            .docs_find(&b, "users", &query)
            .await
            .expect("find")
            .is_empty());
        assert_eq!(
            store
                .docs_find(&a, "users", &query)
                .await
                .expect("find")
                .len(),
            1
        );
    }
    let page = PageRequest::first(100);
    assert!(store
        .docs_list(&b, "users", None, &page)
        .await
        .expect("list")
        .items
        .is_empty());
    assert_eq!(
        store.docs_get(&b, "users", &doc.id).await.expect("get"),
        None
    );
    assert!(matches!(
        store
            .docs_update(&b, "users", &doc.id, &json!({}), &CAUSE)
            .await,
        Err(StoreError::NotFound)
    ));
    let patch = Patch::parse(&json!({"$set": {"n": 2}})).expect("patch");
    assert!(matches!(
        store
            .docs_patch(&b, "users", &doc.id, &patch, 1 << 20, &CAUSE)
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .docs_delete(&b, "users", &doc.id, &CAUSE)
            .await
            .expect("delete")
            .prev,
        None
    );
    let kept = store.docs_get(&a, "users", &doc.id).await.expect("get");
    assert_eq!(
        kept.map(|d| d.data),
        Some(json!({"email": "a@x.io", "n": 1}))
    );
    // Deleting the app takes its documents along.
    store.delete_app(&a).await.expect("delete app");
    assert_eq!(
        store.docs_get(&a, "users", &doc.id).await.expect("get"),
        None
    );
}

async fn docs_trigger(store: &Arc<dyn Store>, app: &AppId, ops: Vec<DocsOp>) -> ScriptId {
    let script = store
        .create_script(NewScript {
            app_id: app.clone(),
            name: format!("on-{}", ops.len()),
            kind: ScriptKind::Endpoint,
            source: "()".into(),
            imports: vec![],
        })
        .await
        .expect("script")
        .id;
    let trigger = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: None,
            config: TriggerConfig::Docs {
                collection: "orders".into(),
                ops: ops.clone(),
            },
        })
        .await
        .expect("trigger");
    assert_eq!(
        trigger.config,
        TriggerConfig::Docs {
            collection: "orders".into(),
            ops
        }
    );
    script
}

pub async fn docs_writes_queue_their_events(store: Arc<dyn Store>) {
    let a = app(&store, "shop").await;
    let all = docs_trigger(
        &store,
        &a,
        vec![DocsOp::Create, DocsOp::Update, DocsOp::Delete],
    )
    .await;
    let deletes = docs_trigger(&store, &a, vec![DocsOp::Delete]).await;
    let (doc, out) = store
        .docs_create(&a, "orders", &json!({"total": 1}), &CAUSE)
        .await
        .expect("create");
    assert_eq!(out.events.len(), 1);
    let (_, out) = store
        .docs_update(&a, "orders", &doc.id, &json!({"total": 2}), &CAUSE)
        .await
        .expect("update");
    assert_eq!(out.events.len(), 1);
    // Another collection fires nothing.
    let (_, out) = store
        .docs_create(&a, "carts", &json!({}), &CAUSE)
        .await
        .expect("create");
    assert!(out.events.is_empty());
    let out = store
        .docs_delete(&a, "orders", &doc.id, &CAUSE)
        .await
        .expect("delete");
    assert_eq!(out.events.len(), 2);

    let claimed = store
        .claim_events(
            picloud_core::now() + Duration::seconds(1),
            100,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 4);
    let mut by_script: HashMap<ScriptId, Vec<Value>> = HashMap::new();
    for event in claimed {
        assert_eq!(event.source, ExecutionSource::Docs);
        by_script
            .entry(event.script_id)
            .or_default()
            .push(event.payload);
    }
    let id = doc.id.as_str();
    assert_eq!(
        by_script[&all],
        vec![
            json!({"source": "docs", "op": "create", "docs": {"collection": "orders", "id": id,
                   "data": {"total": 1}, "prev_data": null}}),
            json!({"source": "docs", "op": "update", "docs": {"collection": "orders", "id": id,
                   "data": {"total": 2}, "prev_data": {"total": 1}}}),
            json!({"source": "docs", "op": "delete", "docs": {"collection": "orders", "id": id,
                   "data": null, "prev_data": {"total": 2}}}),
        ]
    );
    assert_eq!(by_script[&deletes].len(), 1);
    // Past the depth limit, nothing is queued.
    let deep = EventCause { depth: 8, ..CAUSE };
    let (_, out) = store
        .docs_create(&a, "orders", &json!({}), &deep)
        .await
        .expect("create");
    assert!(out.events.is_empty());
    assert_eq!(out.skipped_for_depth, 1);
}

/// Reads stop at `MAX_READ_BYTES` of stored values: a listing ends its page early with
/// a cursor (every row stays reachable), a find refuses, and one row larger than the
/// whole budget still reads on its own.
pub async fn reads_stop_at_their_byte_budget(store: Arc<dyn Store>) {
    let a = app(&store, "big").await;
    let chunk = "x".repeat(2 << 20);
    let count = picloud_store::page::MAX_READ_BYTES / chunk.len() + 4;
    let mut ids = Vec::new();
    for i in 0..count {
        let (doc, _) = store
            .docs_create(&a, "blobs", &json!({"i": i, "s": chunk}), &CAUSE)
            .await
            .expect("create");
        ids.push(doc.id);
        store
            .kv_set(&a, "blobs", &format!("k{i:03}"), &json!(chunk), &CAUSE)
            .await
            .expect("kv set");
    }

    let mut seen = Vec::new();
    let mut page = PageRequest::first(500);
    let mut pages = 0;
    loop {
        let got = store
            .docs_list(&a, "blobs", None, &page)
            .await
            .expect("list");
        pages += 1;
        assert!(!got.items.is_empty(), "a page with a cursor is never empty");
        seen.extend(got.items.iter().map(|d| d.id.clone()));
        match got.next_cursor {
            Some(cursor) => page.after = picloud_store::Cursor::decode(cursor.as_str()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every document is reachable page by page");
    assert!(pages >= 2, "the budget ended the first page early");

    let mut keys = Vec::new();
    let mut page = PageRequest::first(500);
    loop {
        let got = store
            .kv_list(&a, "blobs", None, &page)
            .await
            .expect("kv list");
        keys.extend(got.items.iter().map(|e| e.key.clone()));
        match got.next_cursor {
            Some(cursor) => page.after = picloud_store::Cursor::decode(cursor.as_str()),
            None => break,
        }
    }
    assert_eq!(keys.len(), count);

    let everything = Query::parse(&json!({})).expect("query");
    match store.docs_find(&a, "blobs", &everything).await {
        Err(StoreError::Invalid(message)) => assert!(message.contains("exceed"), "{message}"),
        other => panic!(
            "a find over the budget is refused: {:?}",
            other.map(|d| d.len())
        ),
    }
    let few = Query::parse(&json!({"$limit": 3})).expect("query");
    assert_eq!(
        store
            .docs_find(&a, "blobs", &few)
            .await
            .expect("find")
            .len(),
        3
    );

    // One value over the whole budget is still readable, alone.
    let huge = "y".repeat(picloud_store::page::MAX_READ_BYTES + 1);
    store
        .docs_create(&a, "huge", &json!({"s": huge}), &CAUSE)
        .await
        .expect("create");
    let got = store
        .docs_list(&a, "huge", None, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(got.items.len(), 1);
}

/// This process's resident memory, in MiB (Linux).
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A sorted `find` returning one document must not hold the whole collection: SQLite's
/// sorter kept every row it sorted (150 documents of 1 MB for `$limit: 1` held 170 MB).
pub async fn sorted_finds_do_not_hold_the_collection(store: Arc<dyn Store>) {
    let a = app(&store, "sorted").await;
    let chunk = "z".repeat(1 << 20);
    let count = 120;
    for i in 0..count {
        store
            .docs_create(&a, "big", &json!({"i": i, "s": chunk}), &CAUSE)
            .await
            .expect("create");
    }
    let before = rss_mib();
    for (sort, skip) in [("i", count - 1), ("-i", 0), ("-s", 5)] {
        let query = Query::parse(&json!({"$sort": sort, "$skip": skip, "$limit": 1})).expect("q");
        let found = store.docs_find(&a, "big", &query).await.expect("find");
        assert_eq!(found.len(), 1, "{sort}");
    }
    let query = Query::parse(&json!({"$sort": "-i", "$limit": 1})).expect("q");
    let found = store.docs_find(&a, "big", &query).await.expect("find");
    assert_eq!(found[0].data["i"], json!(count - 1), "the order is kept");
    let grown = rss_mib().saturating_sub(before);
    assert!(
        grown < 48,
        "sorting {count} MiB of documents to return one grew the process by {grown} MiB"
    );
}
