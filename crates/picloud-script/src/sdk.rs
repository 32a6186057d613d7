//! The SDK as the running engine has it registered, for `GET /api/v1/sdk`.
//!
//! Built from Rhai's own function metadata (the `metadata` feature records each
//! function's parameter names, types and `///` doc comments), so the description can
//! never drift from what scripts can actually call. Only the static modules — our
//! namespaces — are described; Rhai's built-in packages are not.

use serde::{Deserialize, Serialize};

/// Version of the scripting contract the description belongs to.
/// 1.1: files, pubsub, secrets and email.
pub const SDK_VERSION: &str = "1.1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkDescription {
    pub version: String,
    /// Sorted by name.
    pub namespaces: Vec<SdkNamespace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkNamespace {
    /// As scripts write it: `regex` for `regex::is_match`; nested modules as `a::b`.
    pub name: String,
    /// Sorted by name, then parameters; each overload listed on its own.
    pub functions: Vec<SdkFunction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkFunction {
    pub name: String,
    /// `"name: type"`, with script-facing type names (`string`, `int`, `blob`, `map`, …).
    pub params: Vec<String>,
    /// Script-facing type name; `()` for none, `any` for a value of several types.
    pub returns: String,
    /// The function's doc comment, without comment markers.
    pub doc: String,
}

/// Describes every static module (namespace) registered in `engine`.
pub fn describe(engine: &rhai::Engine) -> SdkDescription {
    // Rhai exposes module contents with metadata only through this JSON form (the
    // iterators over a module's functions are crate-private).
    let metadata = engine
        .gen_fn_metadata_to_json(false)
        .ok()
        .and_then(|json| serde_json::from_str::<RawModule>(&json).ok())
        .unwrap_or_default();
    let mut namespaces = Vec::new();
    collect(&metadata, None, &mut namespaces);
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    SdkDescription {
        version: SDK_VERSION.to_owned(),
        namespaces,
    }
}

/// Adds the sub-modules of `module` (named under `prefix`) to `out`, depth first.
fn collect(module: &RawModule, prefix: Option<&str>, out: &mut Vec<SdkNamespace>) {
    for (name, sub) in &module.modules {
        let name = match prefix {
            Some(prefix) => format!("{prefix}::{name}"),
            None => name.clone(),
        };
        let mut functions: Vec<SdkFunction> = sub
            .functions
            .iter()
            .filter(|f| f.access == "public" && !f.is_anonymous)
            .map(describe_fn)
            .collect();
        functions.sort_by(|a, b| (&a.name, &a.params).cmp(&(&b.name, &b.params)));
        if !functions.is_empty() {
            out.push(SdkNamespace {
                name: name.clone(),
                functions,
            });
        }
        collect(sub, Some(&name), out);
    }
}

fn describe_fn(f: &RawFunction) -> SdkFunction {
    SdkFunction {
        name: f.name.clone(),
        params: f
            .params
            .iter()
            .map(|p| match (&p.name, &p.typ) {
                (Some(name), Some(typ)) => format!("{name}: {}", script_type(typ)),
                (Some(name), None) => name.clone(),
                (None, Some(typ)) => script_type(typ),
                (None, None) => "_".to_owned(),
            })
            .collect(),
        returns: script_type(&f.return_type),
        doc: doc_text(&f.doc_comments),
    }
}

/// A Rust type name as Rhai's metadata writes it, in the words a script author uses.
fn script_type(rust: &str) -> String {
    let rust = rust.trim();
    if let Some(inner) = rust
        .strip_prefix("Result<")
        .and_then(|t| t.strip_suffix(", Box<EvalAltResult>>"))
    {
        return script_type(inner);
    }
    if let Some(inner) = rust.strip_prefix("&mut ") {
        return script_type(inner);
    }
    match rust.strip_prefix("rhai::").unwrap_or(rust) {
        "" | "()" => "()",
        "&str" | "String" | "ImmutableString" | "string" => "string",
        "i64" | "i32" | "INT" | "int" => "int",
        "f64" | "f32" | "FLOAT" | "float" => "float",
        "bool" => "bool",
        "char" => "char",
        "Blob" | "Vec<u8>" | "blob" => "blob",
        "Array" | "array" => "array",
        "Map" | "map" => "map",
        "FnPtr" | "Fn" => "Fn",
        "Dynamic" | "?" => "any",
        other => other,
    }
    .to_owned()
}

/// Doc comments without `///`, `//!` or `/** */` markers, one line per line.
fn doc_text(comments: &[String]) -> String {
    let mut lines = Vec::new();
    for comment in comments {
        let body = comment
            .trim()
            .strip_prefix("/**")
            .and_then(|c| c.strip_suffix("*/"))
            .unwrap_or(comment);
        for line in body.lines() {
            let line = line.trim();
            let line = line
                .strip_prefix("///")
                .or_else(|| line.strip_prefix("//!"))
                .or_else(|| line.strip_prefix('*'))
                .unwrap_or(line)
                .trim();
            if !line.is_empty() {
                lines.push(line);
            }
        }
    }
    lines.join("\n")
}

/// The part of Rhai's metadata JSON (`Engine::gen_fn_metadata_to_json`) we read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawModule {
    modules: std::collections::BTreeMap<String, RawModule>,
    functions: Vec<RawFunction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawFunction {
    name: String,
    access: String,
    is_anonymous: bool,
    params: Vec<RawParam>,
    return_type: String,
    doc_comments: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawParam {
    name: Option<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdlib::test_support::engine;

    fn namespace<'a>(sdk: &'a SdkDescription, name: &str) -> &'a SdkNamespace {
        sdk.namespaces
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("namespace {name} missing"))
    }

    #[test]
    fn describes_the_standard_library() {
        let sdk = describe(engine());
        assert_eq!(sdk.version, SDK_VERSION);
        let regex = namespace(&sdk, "regex");
        let is_match = regex
            .functions
            .iter()
            .find(|f| f.name == "is_match")
            .expect("regex::is_match described");
        assert_eq!(is_match.params, ["pattern: string", "text: string"]);
        assert_eq!(is_match.returns, "bool");
        assert!(!is_match.doc.is_empty());
        assert!(!is_match.doc.starts_with('/'), "{}", is_match.doc);

        for name in [
            "log", "regex", "random", "time", "json", "base64", "hex", "url", "http", "secrets",
        ] {
            let ns = namespace(&sdk, name);
            for f in &ns.functions {
                assert!(!f.doc.is_empty(), "{name}::{} has no doc", f.name);
                assert!(!f.returns.contains("Result"), "{name}::{}", f.name);
            }
        }
    }

    #[test]
    fn lists_overloads_separately_and_in_order() {
        let sdk = describe(engine());
        let names: Vec<&str> = sdk.namespaces.iter().map(|n| n.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);

        let base64 = namespace(&sdk, "base64");
        let encodes: Vec<&SdkFunction> = base64
            .functions
            .iter()
            .filter(|f| f.name == "encode")
            .collect();
        assert_eq!(encodes.len(), 2);
        assert_eq!(encodes[0].params, ["b: blob"]);
        assert_eq!(encodes[1].params, ["s: string"]);
        let fn_names: Vec<&str> = base64.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            fn_names,
            [
                "decode",
                "decode_url",
                "encode",
                "encode",
                "encode_url",
                "encode_url"
            ]
        );

        let time = namespace(&sdk, "time");
        let format = time
            .functions
            .iter()
            .find(|f| f.name == "format")
            .expect("time::format");
        assert_eq!(format.returns, "string");
        // The native call context is not a script parameter.
        let find_all = namespace(&sdk, "regex")
            .functions
            .iter()
            .find(|f| f.name == "find_all")
            .expect("regex::find_all");
        assert_eq!(find_all.params, ["pattern: string", "text: string"]);
        assert_eq!(find_all.returns, "array");
    }

    #[test]
    fn serialises_to_the_documented_shape() {
        let json = serde_json::to_value(describe(engine())).expect("serialisable");
        assert_eq!(json["version"], "1.1");
        let first = &json["namespaces"][0]["functions"][0];
        for key in ["name", "params", "returns", "doc"] {
            assert!(first.get(key).is_some(), "{key} missing in {first}");
        }
    }

    #[test]
    fn cleans_doc_comments() {
        assert_eq!(
            doc_text(&["/// One.".to_owned(), "/// Two.".to_owned()]),
            "One.\nTwo."
        );
        assert_eq!(
            doc_text(&["/** Block\n * more */".to_owned()]),
            "Block\nmore"
        );
        assert_eq!(script_type("Result<Blob, Box<EvalAltResult>>"), "blob");
        assert_eq!(script_type("&mut Map"), "map");
        assert_eq!(script_type("Forbidden"), "Forbidden");
    }
}
