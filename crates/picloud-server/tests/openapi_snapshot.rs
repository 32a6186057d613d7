//! The dashboard's typed API client is generated from `dashboard/openapi.json`; this
//! test keeps that snapshot equal to what the server generates, so the client cannot
//! drift from the API. `PICLOUD_UPDATE_OPENAPI=1` rewrites the snapshot (then run
//! `npm --prefix dashboard run gen` and rebuild the bundle).

use std::path::PathBuf;

#[test]
fn dashboard_openapi_snapshot_matches_the_server() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dashboard/openapi.json");
    let generated = picloud_server::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    if std::env::var_os("PICLOUD_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).expect("write the snapshot");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("dashboard/openapi.json exists");
    let committed: serde_json::Value =
        serde_json::from_str(&committed).expect("the snapshot is JSON");
    let generated: serde_json::Value =
        serde_json::from_str(&generated).expect("the document is JSON");
    assert!(
        committed == generated,
        "dashboard/openapi.json is stale: run \
         `PICLOUD_UPDATE_OPENAPI=1 cargo test -p picloud-server --test openapi_snapshot`, \
         then `npm --prefix dashboard run gen && npm --prefix dashboard run build`"
    );
}

/// String enums publish their wire values, not the Rust variant names.
#[test]
fn string_enums_publish_wire_values() {
    let doc: serde_json::Value = serde_json::from_str(
        &picloud_server::openapi()
            .to_json()
            .expect("the OpenAPI document serialises"),
    )
    .expect("JSON");
    let values = |name: &str| doc["components"]["schemas"][name]["enum"].clone();
    assert_eq!(values("DispatchMode"), serde_json::json!(["sync", "async"]));
    assert_eq!(
        values("ScriptKind"),
        serde_json::json!(["endpoint", "module"])
    );
    assert_eq!(
        values("ExecutionStatus"),
        serde_json::json!(["ok", "error", "timeout", "limit_exceeded"])
    );
}
