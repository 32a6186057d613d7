//! Save-time checks of what a script imports: the modules exist in the same app, no
//! import cycle forms, and chains stay within the depth a run allows. The resolver
//! checks cycles and depth again at run time, for rows that changed in between.

use std::collections::{BTreeMap, BTreeSet};

use picloud_core::model::{ScriptKind, MAX_IMPORT_DEPTH};
use picloud_core::AppId;
use picloud_script::ScriptImport;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn at(import: &ScriptImport, message: String) -> ApiError {
    let mut err = ApiError::invalid("source", message);
    err.body.line = import.line;
    err.body.column = import.column;
    err
}

/// The import graph by script name, with `name`'s own edges replaced by `imports`.
async fn graph(
    state: &AppState,
    app: &AppId,
    name: &str,
    imports: &[ScriptImport],
) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for edge in state.store.import_edges(app).await? {
        if edge.script_name != name {
            graph.entry(edge.script_name).or_default().push(edge.module);
        }
    }
    graph.insert(
        name.to_owned(),
        imports.iter().map(|i| i.name.clone()).collect(),
    );
    Ok(graph)
}

/// A path from `from` back to `target`, if there is one.
fn path_to(
    graph: &BTreeMap<String, Vec<String>>,
    from: &str,
    target: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if from == target {
        return Some(vec![from.to_owned()]);
    }
    if !seen.insert(from.to_owned()) {
        return None;
    }
    for next in graph.get(from).into_iter().flatten() {
        if let Some(mut path) = path_to(graph, next, target, seen) {
            path.insert(0, from.to_owned());
            return Some(path);
        }
    }
    None
}

/// The longest chain of imports starting at `from` (the graph is acyclic here).
fn longest_chain(graph: &BTreeMap<String, Vec<String>>, from: &str, depth: usize) -> Vec<String> {
    let mut best = Vec::new();
    // Past the limit the exact length no longer matters; stop before a long walk.
    if depth <= MAX_IMPORT_DEPTH + 1 {
        for next in graph.get(from).into_iter().flatten() {
            let chain = longest_chain(graph, next, depth + 1);
            if chain.len() > best.len() {
                best = chain;
            }
        }
    }
    best.insert(0, from.to_owned());
    best
}

/// Checks the imports of script `name` (of `kind`) about to be saved in `app`.
pub async fn check_imports(
    state: &AppState,
    app: &AppId,
    name: &str,
    kind: ScriptKind,
    imports: &[ScriptImport],
) -> ApiResult<()> {
    if imports.is_empty() {
        return Ok(());
    }
    for import in imports {
        if import.name == name && kind == ScriptKind::Module {
            return Err(at(import, format!("circular import: {name} → {name}")));
        }
        match state.store.get_module(app, &import.name).await {
            Ok(_) => {}
            Err(picloud_store::StoreError::NotFound) => {
                return Err(at(
                    import,
                    format!("the app has no module named {:?}", import.name),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let graph = graph(state, app, name, imports).await?;
    if kind == ScriptKind::Module {
        for import in imports {
            if let Some(path) = path_to(&graph, &import.name, name, &mut BTreeSet::new()) {
                return Err(at(
                    import,
                    format!("circular import: {name} → {}", path.join(" → ")),
                ));
            }
        }
    }
    // The longest chain through this script: what imports it from above (a module is
    // always at least one import below an endpoint) and what it imports below.
    let below = longest_chain(&graph, name, 0);
    let mut reversed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (importer, modules) in &graph {
        for module in modules {
            reversed
                .entry(module.clone())
                .or_default()
                .push(importer.clone());
        }
    }
    let mut above = longest_chain(&reversed, name, 0);
    above.reverse();
    let from_above = match kind {
        ScriptKind::Module => (above.len() - 1).max(1),
        ScriptKind::Endpoint => 0,
    };
    let hops = from_above + below.len() - 1;
    if hops > MAX_IMPORT_DEPTH {
        let first = below
            .get(1)
            .and_then(|m| imports.iter().find(|i| &i.name == m));
        let mut chain = above;
        chain.extend(below.into_iter().skip(1));
        let message = format!(
            "imports nest deeper than {MAX_IMPORT_DEPTH}: {}",
            chain.join(" → ")
        );
        return Err(match first {
            Some(import) => at(import, message),
            None => ApiError::invalid("source", message),
        });
    }
    Ok(())
}
