//! The I/O-free standard library (SCRIPTING.md "Standard library"): one file per
//! namespace, each registered as a static module under its name.

mod log;

use rhai::Engine;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("log", log::module().into());
}
