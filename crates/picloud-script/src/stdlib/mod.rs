//! The I/O-free standard library (SCRIPTING.md "Standard library"): one file per
//! namespace, each registered as a static module under its name.

mod b64;
mod hex;
mod json;
mod log;
mod random;
mod regex;
#[cfg(test)]
pub(crate) mod test_support;
mod time;
mod url;

use rhai::Engine;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("log", log::module().into());
    engine.register_static_module("regex", regex::module().into());
    engine.register_static_module("random", random::module().into());
    engine.register_static_module("time", time::module().into());
    engine.register_static_module("json", json::module().into());
    engine.register_static_module("base64", b64::module().into());
    engine.register_static_module("hex", hex::module().into());
    engine.register_static_module("url", url::module().into());
    json::register_parse_json(engine);
}
