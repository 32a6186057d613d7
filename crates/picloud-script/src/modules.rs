//! Modules: what a script imports (checked on save) and the resolver that loads the
//! running app's modules when an `import` runs.
//!
//! The resolver is part of the one shared engine, so everything about a run — which
//! app, the chain of imports in progress — comes from the run's thread-local state.
//! Compiled module ASTs are cached by (app, name) and re-checked against the module's
//! `updated_at` on every import, so an edited module takes effect on the next run.
//! Evaluated modules are not cached: a module's value embeds the modules *it*
//! imports, and caching it would keep serving an edited dependency.

use std::num::NonZeroUsize;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lru::LruCache;
use parking_lot::Mutex;
use picloud_core::model::{validate_module_name, ScriptKind, MAX_IMPORT_DEPTH};
use picloud_services::ServiceError;
use rhai::{
    ASTFlags, ASTNode, Engine, EvalAltResult, Expr, Module, Position, Scope, Shared, Stmt, AST,
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
/// holds only `fn`, `const` and `import`.
pub fn inspect(ast: &AST, kind: ScriptKind) -> Result<Vec<ScriptImport>, CompileError> {
    if kind == ScriptKind::Module {
        for stmt in ast.statements() {
            let allowed = match stmt {
                // Only constant values: an initialiser that calls something would run
                // on every import (and could reach services).
                Stmt::Var(x, flags, _) => flags.contains(ASTFlags::CONSTANT) && x.1.is_constant(),
                Stmt::Import(..) | Stmt::Export(..) | Stmt::Noop(_) => true,
                _ => false,
            };
            if !allowed {
                return Err(at(
                    "a module may only hold `fn`, `const` (of constant values) and `import` at its top level",
                    stmt.position(),
                ));
            }
        }
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

/// Compiled modules by (app, name), each with the `updated_at` it was compiled from.
type ModuleCache = LruCache<(String, String), (DateTime<Utc>, Arc<AST>)>;

pub(crate) struct Resolver {
    cache: Mutex<ModuleCache>,
}

impl Resolver {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn compiled(
        &self,
        engine: &Engine,
        script: &picloud_store::Script,
    ) -> Result<Arc<AST>, String> {
        let key = (script.app_id.as_str().to_owned(), script.name.clone());
        if let Some((updated_at, ast)) = self.cache.lock().get(&key) {
            if *updated_at == script.updated_at {
                return Ok(ast.clone());
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
        let ast = Arc::new(ast);
        self.cache.lock().put(key, (script.updated_at, ast.clone()));
        Ok(ast)
    }
}

fn import_error(message: impl std::fmt::Display, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        format!("import: {message}").into(),
        pos,
    ))
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
        validate_module_name(path).map_err(|why| import_error(format!("{path:?}: {why}"), pos))?;
        let _entered =
            state::enter_import(path, MAX_IMPORT_DEPTH).map_err(|refused| match refused {
                ImportRefused::Cycle(chain) => {
                    import_error(format!("circular import: {}", chain.join(" → ")), pos)
                }
                ImportRefused::TooDeep(chain) => import_error(
                    format!(
                        "imports nest deeper than {MAX_IMPORT_DEPTH}: {}",
                        chain.join(" → ")
                    ),
                    pos,
                ),
            })?;
        let name = path.to_owned();
        let found = services::call("import", move |s, ctx| async move {
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
        })?;
        let Some(script) = found else {
            return Err(import_error(
                format!("the app has no module named {path:?}"),
                pos,
            ));
        };
        let ast = self
            .0
            .compiled(engine, &script)
            .map_err(|m| import_error(m, pos))?;
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
        // Rhai exports only variables marked `export`; a module's constants are its
        // public values, so the literal ones are exported without the keyword.
        for (name, _, value) in ast.iter_literal_variables(true, false) {
            if !module.contains_var(name) {
                module.set_var(name, value);
            }
        }
        Ok(module.into())
    }
}
