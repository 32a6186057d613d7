//! Building the one shared engine: limits, packages, the sandbox's closed doors.

use std::time::Instant;

use picloud_core::config::ScriptLimits;
use picloud_core::model::LogLevel;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine};

use crate::error::TIMEOUT_TOKEN;
use crate::{state, stdlib, Forbidden};

/// How often (in operations) the progress callback reads the clock.
const CLOCK_CHECK_EVERY: u64 = 1024;

pub(crate) fn build(limits: &ScriptLimits) -> Engine {
    // `new_raw`: no file-system module resolver, no printing to stdout.
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());

    // Every limit set explicitly: Rhai's defaults differ between debug and release.
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_string_size(limits.max_string_bytes);
    engine.set_max_array_size(limits.max_array_len);
    engine.set_max_map_size(limits.max_map_len);
    engine.set_max_modules(64);
    engine.set_max_variables(10_000);
    engine.set_max_functions(1_000);
    engine.set_max_strings_interned(1_024);

    engine.disable_symbol("eval");

    engine.on_progress(|ops| {
        if ops % CLOCK_CHECK_EVERY != 0 {
            return None;
        }
        match state::deadline() {
            Some(deadline) if Instant::now() >= deadline => Some(Dynamic::from(TIMEOUT_TOKEN)),
            _ => None,
        }
    });
    engine.on_print(|text| state::log(LogLevel::Info, text));
    engine.on_debug(|text, _source, _pos| state::log(LogLevel::Trace, text));

    engine
        .register_type_with_name::<Forbidden>("Forbidden")
        .register_fn("to_string", |f: &mut Forbidden| f.to_string())
        .register_fn("to_debug", |f: &mut Forbidden| f.to_string())
        .register_get("message", |f: &mut Forbidden| f.to_string());

    stdlib::register(&mut engine);
    engine
}
