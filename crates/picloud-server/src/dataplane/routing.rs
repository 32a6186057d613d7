//! Per-app route tables, built from the store on first use and dropped whenever the
//! app's routes or scripts change, so the request path never touches the database.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{self, AtomicU64};
use std::sync::Arc;

use parking_lot::RwLock;
use picloud_core::model::RouteMethod;
use picloud_core::route_pattern::RoutePattern;
use picloud_core::route_trie::RouteTrie;
use picloud_core::AppId;
use picloud_store::{App, Route, RouteTarget, Script, Store, StoreError, StoreResult};

pub struct Entry {
    pub route: Route,
    pub script: Arc<Script>,
}

/// One app's routes: one trie per method, `ANY` included.
#[derive(Default)]
pub struct RouteTable {
    by_method: HashMap<RouteMethod, RouteTrie<usize>>,
    entries: Vec<Entry>,
}

pub struct Matched<'a> {
    pub entry: &'a Entry,
    pub params: Vec<(String, String)>,
}

impl RouteTable {
    pub fn build(targets: Vec<RouteTarget>) -> Self {
        let mut table = RouteTable::default();
        for target in targets {
            let Ok(pattern) = RoutePattern::parse(&target.route.path) else {
                tracing::warn!(route = %target.route.id, "stored route has an invalid path; skipped");
                continue;
            };
            let index = table.entries.len();
            let trie = table.by_method.entry(target.route.method).or_default();
            if trie.insert(pattern, index).is_err() {
                tracing::warn!(route = %target.route.id, "route clashes with another; skipped");
                continue;
            }
            table.entries.push(Entry {
                route: target.route,
                script: Arc::new(target.script),
            });
        }
        table
    }

    /// The route for a request: among the routes whose method matches (the method
    /// itself, `GET` for `HEAD`, or `ANY`), the one with the most specific path;
    /// on equal shapes an exact method beats `ANY`.
    pub fn lookup(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let mut methods = Vec::with_capacity(3);
        if let Some(m) = RouteMethod::from_request(method) {
            methods.push(m);
            if m == RouteMethod::Head {
                methods.push(RouteMethod::Get);
            }
        }
        methods.push(RouteMethod::Any);
        let best = methods
            .into_iter()
            .filter_map(|m| self.by_method.get(&m)?.lookup(path))
            .reduce(
                |best, next| match next.pattern.cmp_specificity(best.pattern) {
                    Ordering::Less => next,
                    Ordering::Equal | Ordering::Greater => best,
                },
            )?;
        Some(Matched {
            entry: &self.entries[*best.value],
            params: best.params,
        })
    }
}

/// Caches of apps (by slug and id) and their route tables.
#[derive(Default)]
pub struct Routing {
    apps: RwLock<HashMap<String, Arc<App>>>,
    tables: RwLock<HashMap<AppId, Arc<RouteTable>>>,
    /// Bumped by every invalidation. A load that began before one must not cache what
    /// it read: it may predate the change the invalidation announced.
    generation: AtomicU64,
}

impl Routing {
    /// The app with this slug; `None` if there is none.
    pub async fn app_by_slug(
        &self,
        store: &dyn Store,
        slug: &str,
    ) -> StoreResult<Option<Arc<App>>> {
        if let Some(app) = self.apps.read().get(slug) {
            return Ok(Some(app.clone()));
        }
        let generation = self.generation.load(atomic::Ordering::Acquire);
        match store.get_app_by_slug(slug).await {
            Ok(app) => {
                let app = Arc::new(app);
                let mut apps = self.apps.write();
                if self.generation.load(atomic::Ordering::Acquire) == generation {
                    apps.insert(slug.to_owned(), app.clone());
                }
                Ok(Some(app))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn table(&self, store: &dyn Store, app: &AppId) -> StoreResult<Arc<RouteTable>> {
        if let Some(table) = self.tables.read().get(app) {
            return Ok(table.clone());
        }
        let generation = self.generation.load(atomic::Ordering::Acquire);
        let table = Arc::new(RouteTable::build(store.route_targets(app).await?));
        let mut tables = self.tables.write();
        if self.generation.load(atomic::Ordering::Acquire) == generation {
            tables.insert(app.clone(), table.clone());
        }
        Ok(table)
    }

    /// The app row cached for `slug`, if any, without loading it (tests check what a
    /// node still holds after another node changed the app).
    pub fn cached_app(&self, slug: &str) -> Option<Arc<App>> {
        self.apps.read().get(slug).cloned()
    }

    /// The app's routes or scripts changed.
    pub fn invalidate_routes(&self, app: &AppId) {
        self.generation.fetch_add(1, atomic::Ordering::AcqRel);
        self.tables.write().remove(app);
    }

    /// Anything may have changed.
    pub fn clear(&self) {
        self.generation.fetch_add(1, atomic::Ordering::AcqRel);
        self.apps.write().clear();
        self.tables.write().clear();
    }

    /// The app itself changed or is gone.
    pub fn invalidate_app(&self, app: &AppId) {
        self.generation.fetch_add(1, atomic::Ordering::AcqRel);
        self.apps.write().retain(|_, a| a.id != *app);
        self.invalidate_routes(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picloud_core::model::{DispatchMode, RouteAuth, ScriptKind};
    use picloud_core::{RouteId, ScriptId};

    fn target(method: RouteMethod, path: &str) -> RouteTarget {
        let app_id = AppId::new();
        let script = Script {
            id: ScriptId::new(),
            app_id: app_id.clone(),
            name: format!("{method} {path}"),
            kind: ScriptKind::Endpoint,
            source: String::new(),
            created_at: picloud_core::now(),
            updated_at: picloud_core::now(),
        };
        RouteTarget {
            route: Route {
                id: RouteId::new(),
                app_id,
                script_id: script.id.clone(),
                method,
                path: path.into(),
                dispatch_mode: DispatchMode::Sync,
                auth: RouteAuth::Public,
                created_at: picloud_core::now(),
            },
            script,
        }
    }

    fn routed(
        table: &RouteTable,
        method: &str,
        path: &str,
    ) -> Option<(String, Vec<(String, String)>)> {
        table
            .lookup(method, path)
            .map(|m| (m.entry.script.name.clone(), m.params))
    }

    #[test]
    fn precedence_literal_param_wildcard_and_exact_method_over_any() {
        let table = RouteTable::build(vec![
            target(RouteMethod::Get, "/users/{id}"),
            target(RouteMethod::Get, "/users/me"),
            target(RouteMethod::Any, "/users/{*rest}"),
            target(RouteMethod::Any, "/users/{uid}"),
            target(RouteMethod::Post, "/users/{id}/posts"),
        ]);
        assert_eq!(
            routed(&table, "GET", "/users/me").map(|r| r.0).as_deref(),
            Some("GET /users/me")
        );
        let (name, params) = routed(&table, "GET", "/users/42").expect("match");
        assert_eq!(name, "GET /users/{id}");
        assert_eq!(params, vec![("id".to_owned(), "42".to_owned())]);
        // No DELETE route: the ANY param route beats the ANY wildcard.
        let (name, params) = routed(&table, "DELETE", "/users/42").expect("match");
        assert_eq!(name, "ANY /users/{uid}");
        assert_eq!(params, vec![("uid".to_owned(), "42".to_owned())]);
        let (name, params) = routed(&table, "GET", "/users/a/b%20c").expect("match");
        assert_eq!(name, "ANY /users/{*rest}");
        assert_eq!(params, vec![("rest".to_owned(), "a/b c".to_owned())]);
        // A more specific ANY literal beats a less specific exact-method param.
        assert_eq!(
            routed(&table, "POST", "/users/7/posts")
                .map(|r| r.0)
                .as_deref(),
            Some("POST /users/{id}/posts")
        );
        // HEAD falls back to GET.
        assert_eq!(
            routed(&table, "HEAD", "/users/me").map(|r| r.0).as_deref(),
            Some("GET /users/me")
        );
        assert!(routed(&table, "GET", "/nothing").is_none());
        assert!(routed(&table, "GET", "/users").is_none());
    }
}
