//! Modules: what a script imports (checked on save) and the resolver that loads the
//! running app's modules when an `import` runs.
//!
//! The resolver is part of the one shared engine, so everything about a run — which
//! app, the chain of imports in progress — comes from the run's thread-local state.
//! A module is compiled and evaluated once per version: the cache keeps, by (app,
//! name), the AST compiled from the module's `updated_at` and the module evaluated
//! from it, with the version of every module that evaluation imported (a module's
//! value embeds what it imports). An import looks those versions up again, so an edit
//! of the module, or of anything below it, takes effect on the next run.
//!
//! A module's top level runs once for every run that imports it after a change, so it
//! may compute constants but not act: `inspect` refuses SDK calls in it on save, and
//! the services refuse calls made while a module loads (from a function it calls).
//! Evaluation counts against the importing run's limits (operations, memory, time,
//! call depth), like any of the run's own work.

use std::num::NonZeroUsize;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lru::LruCache;
use parking_lot::Mutex;
use picloud_core::model::{validate_module_name, ScriptKind, MAX_IMPORT_DEPTH};
use picloud_services::ServiceError;
use rhai::{
    ASTFlags, ASTNode, Engine, EvalAltResult, Expr, GlobalRuntimeState, Module, Position, Scope,
    Shared, Stmt, AST,
};

use crate::error::CompileError;
use crate::state::ImportRefused;
use crate::{services, state};

/// A module a script imports, where the `import` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptImport {
    pub name: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

fn at(message: impl Into<String>, pos: Position) -> CompileError {
    let to_u32 = |v: Option<usize>| v.and_then(|v| u32::try_from(v).ok());
    CompileError {
        message: message.into(),
        line: to_u32(pos.line()),
        column: to_u32(pos.position()),
    }
}

/// The imports of a compiled script, in source order without repeats, after checking
/// that each names a module by a string literal and, for a module, that its top level
/// holds only `fn`, `const` and `import`, and that no `const` calls the SDK.
pub fn inspect(ast: &AST, kind: ScriptKind) -> Result<Vec<ScriptImport>, CompileError> {
    if kind == ScriptKind::Module {
        check_module_shape(ast)?;
    }
    let mut imports: Vec<ScriptImport> = Vec::new();
    let mut failure = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = path.last() else {
            return true;
        };
        let problem = match &x.0 {
            Expr::StringConstant(name, _) => match validate_module_name(name) {
                Ok(()) => {
                    if !imports.iter().any(|i| i.name == name.as_str()) {
                        let e = at("", *pos);
                        imports.push(ScriptImport {
                            name: name.to_string(),
                            line: e.line,
                            column: e.column,
                        });
                    }
                    return true;
                }
                Err(why) => format!("import {name:?}: {why}"),
            },
            _ => "an import must name its module with a string literal".to_owned(),
        };
        failure = Some(at(problem, *pos));
        false
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(imports),
    }
}

fn check_module_shape(ast: &AST) -> Result<(), CompileError> {
    let aliases: Vec<&str> = ast
        .statements()
        .iter()
        .filter_map(|stmt| match stmt {
            Stmt::Import(x, _) => Some(x.1.as_str()),
            _ => None,
        })
        .collect();
    for stmt in ast.statements() {
        match stmt {
            Stmt::Var(x, flags, _) if flags.contains(ASTFlags::CONSTANT) => {
                if let Some((call, pos)) = sdk_call_in(&x.1, &aliases) {
                    return Err(at(
                        format!(
                            "a module's `const` may not call the SDK (`{call}`): it is computed once, \
                             when the module loads; call the SDK inside a `fn`"
                        ),
                        pos,
                    ));
                }
            }
            Stmt::Import(..) | Stmt::Export(..) | Stmt::Noop(_) => {}
            _ => {
                return Err(at(
                    "a module may only hold `fn`, `const` and `import` at its top level",
                    stmt.position(),
                ))
            }
        }
    }
    Ok(())
}

/// The first call in `expr` of an SDK function (a namespace that is not one of the
/// module's imports) or of `print`/`debug`, which write to the run's log.
fn sdk_call_in(expr: &Expr, aliases: &[&str]) -> Option<(String, Position)> {
    let mut found = None;
    expr.walk(&mut Vec::new(), &mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(Expr::FnCall(call, pos))) = path.last() else {
            return true;
        };
        let namespace = &call.namespace;
        let sdk = if namespace.is_empty() {
            matches!(call.name.as_str(), "print" | "debug")
        } else {
            !aliases.contains(&namespace.root())
        };
        if sdk {
            let name = if namespace.is_empty() {
                call.name.to_string()
            } else {
                format!("{namespace}::{}", call.name)
            };
            found = Some((name, *pos));
        }
        !sdk
    });
    found
}

/// The modules an evaluated module was built from: what decides whether a cached
/// evaluation still holds, and how deep the imports below it go.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModuleDeps {
    /// Every module imported below, directly or not, with the `updated_at` it had.
    versions: Vec<(String, DateTime<Utc>)>,
    /// The longest chain of imports below, outermost first.
    chain: Vec<String>,
}

impl ModuleDeps {
    /// Records the import of `name` at `version`, itself built from `below`.
    pub(crate) fn add(&mut self, name: &str, version: DateTime<Utc>, below: &ModuleDeps) {
        let imported = std::iter::once((name, version))
            .chain(below.versions.iter().map(|(n, v)| (n.as_str(), *v)));
        for (name, version) in imported {
            if !self.versions.iter().any(|(n, _)| n == name) {
                self.versions.push((name.to_owned(), version));
            }
        }
        if below.chain.len() >= self.chain.len() {
            self.chain = std::iter::once(name.to_owned())
                .chain(below.chain.iter().cloned())
                .collect();
        }
    }
}

/// The most an evaluated module may add to the memory the cache holds (its constants,
/// as the allocator counted its evaluation); a larger one is evaluated on every import.
const MAX_KEPT_BYTES: isize = 1 << 20;

/// A module as the cache holds it: compiled from `updated_at`, and evaluated once an
/// import has evaluated it (and the result was small enough to keep).
struct Cached {
    updated_at: DateTime<Utc>,
    ast: Arc<AST>,
    evaluated: Option<Evaluated>,
}

#[derive(Clone)]
struct Evaluated {
    module: Shared<Module>,
    deps: ModuleDeps,
}

type ModuleCache = LruCache<(String, String), Cached>;

pub(crate) struct Resolver {
    cache: Mutex<ModuleCache>,
}

fn cache_key(script: &picloud_store::Script) -> (String, String) {
    (script.app_id.as_str().to_owned(), script.name.clone())
}

impl Resolver {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The module's AST for its current version, and its evaluation if one is kept.
    fn compiled(
        &self,
        engine: &Engine,
        script: &picloud_store::Script,
    ) -> Result<(Arc<AST>, Option<Evaluated>), String> {
        let key = cache_key(script);
        if let Some(cached) = self.cache.lock().get(&key) {
            if cached.updated_at == script.updated_at {
                return Ok((cached.ast.clone(), cached.evaluated.clone()));
            }
        }
        let describe = |e: CompileError| match e.line {
            Some(line) => format!("module {:?} line {line}: {}", script.name, e.message),
            None => format!("module {:?}: {}", script.name, e.message),
        };
        let ast = engine
            .compile(&script.source)
            .map_err(|e| describe(CompileError::from(e)))?;
        // Checked again at load: a row written around the admin API must not run
        // statements on import.
        inspect(&ast, ScriptKind::Module).map_err(describe)?;
        let ast = Arc::new(exporting_constants(&ast));
        let cached = Cached {
            updated_at: script.updated_at,
            ast: ast.clone(),
            evaluated: None,
        };
        self.cache.lock().put(key, cached);
        Ok((ast, None))
    }

    /// Keeps `evaluated` as the module's value while its version stays current.
    fn keep(&self, script: &picloud_store::Script, evaluated: Evaluated) {
        if let Some(cached) = self.cache.lock().get_mut(&cache_key(script)) {
            if cached.updated_at == script.updated_at {
                cached.evaluated = Some(evaluated);
            }
        }
    }
}

/// `ast` with every top-level constant exported: a module's constants are its public
/// values, and Rhai exports only what `export` marks.
fn exporting_constants(ast: &AST) -> AST {
    let statements = ast.statements().iter().map(|stmt| match stmt {
        Stmt::Var(x, flags, pos) if flags.contains(ASTFlags::CONSTANT) => {
            Stmt::Var(x.clone(), *flags | ASTFlags::EXPORTED, *pos)
        }
        other => other.clone(),
    });
    AST::new(statements, ast.shared_lib().clone())
}

/// Evaluates a module's top level into its value. It runs with a state of its own —
/// it sees its own code and imports, never the importer's, so its value is the same
/// for every importer and can be kept — but at the importer's call depth, so the
/// depth limit holds for the run as a whole.
fn evaluate(
    engine: &Engine,
    importer: &GlobalRuntimeState,
    ast: &AST,
    name: &str,
    pos: Position,
) -> Result<Shared<Module>, Box<EvalAltResult>> {
    let mut global = engine.new_global_runtime_state();
    global.level = importer.level;
    let mut module = Module::eval_ast_as_new_raw(engine, &mut Scope::new(), &mut global, ast)
        .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.to_owned(), e, pos)))?;
    // Indexed once here: Rhai copies an unindexed module on every import.
    module.build_index();
    Ok(module.into())
}

fn import_error(message: impl std::fmt::Display, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        format!("import: {message}").into(),
        pos,
    ))
}

fn too_deep(chain: &[String], pos: Position) -> Box<EvalAltResult> {
    import_error(
        format!(
            "imports nest deeper than {MAX_IMPORT_DEPTH}: {}",
            chain.join(" → ")
        ),
        pos,
    )
}

/// The app's module `name`, if it has one.
fn lookup(name: &str, pos: Position) -> Result<Option<picloud_store::Script>, Box<EvalAltResult>> {
    let name = name.to_owned();
    services::call_while_importing("import", move |s, ctx| async move {
        s.modules.lookup(&ctx, &name).await.map_err(|e| {
            // The backend's words stay in the log; the script gets a stable message.
            tracing::error!(error = %e, module = %name, "module lookup failed");
            ServiceError::Invalid("module backend unavailable; check server logs".into())
        })
    })
    .map_err(|e| match *e {
        // `call` names the namespace already; keep the import's position.
        EvalAltResult::ErrorRuntime(v, _) => Box::new(EvalAltResult::ErrorRuntime(v, pos)),
        other => Box::new(other),
    })
}

/// Whether a kept evaluation may serve this import: the chain it needs fits under the
/// depth limit from here, and every module it was built from is still as it was.
fn still_current(deps: &ModuleDeps, pos: Position) -> Result<bool, Box<EvalAltResult>> {
    let chain = state::import_chain();
    if chain.len() + deps.chain.len() > MAX_IMPORT_DEPTH {
        let chain: Vec<String> = chain
            .into_iter()
            .chain(deps.chain.iter().cloned())
            .take(MAX_IMPORT_DEPTH + 1)
            .collect();
        return Err(too_deep(&chain, pos));
    }
    for (name, version) in &deps.versions {
        match lookup(name, pos)? {
            Some(script) if script.updated_at == *version => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Makes the engine's resolver share one [`Resolver`] with the [`crate::ScriptEngine`].
pub(crate) struct SharedResolver(pub Arc<Resolver>);

impl rhai::ModuleResolver for SharedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        // An `import` statement calls `resolve_raw`, with the importer's state.
        let mut global = engine.new_global_runtime_state();
        self.resolve_raw(engine, &mut global, &mut Scope::new(), path, pos)
    }

    fn resolve_raw(
        &self,
        engine: &Engine,
        global: &mut GlobalRuntimeState,
        _scope: &mut Scope,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        validate_module_name(path).map_err(|why| import_error(format!("{path:?}: {why}"), pos))?;
        let entered =
            state::enter_import(path, MAX_IMPORT_DEPTH).map_err(|refused| match refused {
                ImportRefused::Cycle(chain) => {
                    import_error(format!("circular import: {}", chain.join(" → ")), pos)
                }
                ImportRefused::TooDeep(chain) => too_deep(&chain, pos),
            })?;
        let Some(script) = lookup(path, pos)? else {
            return Err(import_error(
                format!("the app has no module named {path:?}"),
                pos,
            ));
        };
        let (ast, evaluated) = self
            .0
            .compiled(engine, &script)
            .map_err(|m| import_error(m, pos))?;
        if let Some(evaluated) = evaluated {
            if still_current(&evaluated.deps, pos)? {
                entered.leave(script.updated_at, &evaluated.deps);
                return Ok(evaluated.module);
            }
        }
        let before = picloud_alloc::thread_allocated();
        let module = evaluate(engine, global, &ast, path, pos)?;
        let kept = picloud_alloc::thread_allocated().saturating_sub(before);
        let deps = entered.dependencies();
        if kept <= MAX_KEPT_BYTES {
            self.0.keep(
                &script,
                Evaluated {
                    module: module.clone(),
                    deps: deps.clone(),
                },
            );
        }
        entered.leave(script.updated_at, &deps);
        Ok(module)
    }
}

#[cfg(test)]
mod tests;
