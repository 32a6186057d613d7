//! Per-app route tables, built from the store on first use and dropped whenever the
//! app's routes or scripts change, so the request path never touches the database.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use picloud_core::model::RouteMethod;
use picloud_core::route_pattern::RoutePattern;
use picloud_core::AppId;
use picloud_store::{App, Route, RouteTarget, Script, Store, StoreError, StoreResult};

pub struct Entry {
    pub route: Route,
    pub pattern: RoutePattern,
    pub script: Arc<Script>,
}

/// One app's routes, one matcher per method plus one for `ANY`.
#[derive(Default)]
pub struct RouteTable {
    by_method: HashMap<RouteMethod, matchit::Router<usize>>,
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
            let router = table.by_method.entry(target.route.method).or_default();
            if let Err(e) = router.insert(pattern.normalized(), index) {
                tracing::warn!(route = %target.route.id, error = %e, "route clashes; skipped");
                continue;
            }
            table.entries.push(Entry {
                route: target.route,
                pattern,
                script: Arc::new(target.script),
            });
        }
        table
    }

    fn find(&self, method: RouteMethod, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        let matched = self.by_method.get(&method)?.at(path).ok()?;
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some((*matched.value, params))
    }

    /// The route for a request: among the routes whose method matches (the method
    /// itself, `GET` for `HEAD`, or `ANY`), the one with the most specific path;
    /// on equal shapes an exact method beats `ANY`.
    pub fn lookup(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let exact = RouteMethod::from_request(method);
        let mut candidates = Vec::with_capacity(3);
        if let Some(m) = exact {
            candidates.extend(self.find(m, path));
            if m == RouteMethod::Head {
                candidates.extend(self.find(RouteMethod::Get, path));
            }
        }
        candidates.extend(self.find(RouteMethod::Any, path));
        let (index, raw) = candidates.into_iter().reduce(|best, next| {
            match self.entries[next.0]
                .pattern
                .cmp_specificity(&self.entries[best.0].pattern)
            {
                Ordering::Less => next,
                Ordering::Equal | Ordering::Greater => best,
            }
        })?;
        let entry = &self.entries[index];
        let params = entry
            .pattern
            .params()
            .filter_map(|(position, name)| {
                let key = format!("p{position}");
                raw.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (name.to_owned(), percent_decode(v)))
            })
            .collect();
        Some(Matched { entry, params })
    }
}

/// Path segments are percent-encoded; `+` is a literal plus in a path.
fn percent_decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Caches of apps (by slug and id) and their route tables.
#[derive(Default)]
pub struct Routing {
    apps: RwLock<HashMap<String, Arc<App>>>,
    tables: RwLock<HashMap<AppId, Arc<RouteTable>>>,
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
        match store.get_app_by_slug(slug).await {
            Ok(app) => {
                let app = Arc::new(app);
                self.apps.write().insert(slug.to_owned(), app.clone());
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
        let table = Arc::new(RouteTable::build(store.route_targets(app).await?));
        self.tables.write().insert(app.clone(), table.clone());
        Ok(table)
    }

    /// The app's routes or scripts changed.
    pub fn invalidate_routes(&self, app: &AppId) {
        self.tables.write().remove(app);
    }

    /// The app itself changed or is gone.
    pub fn invalidate_app(&self, app: &AppId) {
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

    #[test]
    fn decodes_params_but_keeps_plus() {
        let table = RouteTable::build(vec![target(RouteMethod::Get, "/hello/{name}")]);
        let (_, params) = routed(&table, "GET", "/hello/a+b%2Fc").expect("match");
        assert_eq!(params[0].1, "a+b/c");
    }
}
