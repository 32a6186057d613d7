//! `url::*`: parsing URLs (WHATWG rules, the `url` crate) and percent-encoding.
//!
//! `url::parse` gives `query` as a map of decoded strings (a repeated key keeps its
//! last value) and `port` as the explicit port or the scheme's default; the password
//! is deliberately left out.

use rhai::plugin::*;
use rhai::{EvalAltResult, Map, INT};

/// RFC 3986 unreserved characters: never percent-encoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The length of `encode(s)`.
fn encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| if is_unreserved(b) { 1 } else { 3 })
        .sum()
}

/// Percent-encodes every byte of `s` but the unreserved ones (space becomes `%20`).
fn encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` sequences; a `%` not followed by two hex digits stays as it is, and
/// `+` stays `+` (this is a URI component, not a form).
fn decode(s: &str) -> Result<String, Box<EvalAltResult>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "url: decoded text is not valid UTF-8".into())
}

fn text(s: &str) -> Dynamic {
    Dynamic::from(s.to_owned())
}

// rhai_codegen unwraps the lock on a `&mut` first parameter in the code it generates.
#[allow(clippy::unwrap_used)]
#[export_module]
mod url_ns {
    use super::*;

    /// URL `s` as `#{scheme, username, host, port, path, query, fragment}`; absent parts `()`.
    #[rhai_fn(return_raw)]
    pub fn parse(s: &str) -> Result<Map, Box<EvalAltResult>> {
        let parsed = ::url::Url::parse(s).map_err(|e| format!("url: invalid URL: {e}"))?;
        let mut query = Map::new();
        for (key, value) in parsed.query_pairs() {
            query.insert(key.as_ref().into(), text(&value));
        }
        let mut map = Map::new();
        map.insert("scheme".into(), text(parsed.scheme()));
        map.insert("username".into(), text(parsed.username()));
        map.insert("host".into(), parsed.host_str().map_or(Dynamic::UNIT, text));
        map.insert(
            "port".into(),
            parsed
                .port_or_known_default()
                .map_or(Dynamic::UNIT, |p| Dynamic::from_int(INT::from(p))),
        );
        map.insert("path".into(), text(parsed.path()));
        map.insert("query".into(), Dynamic::from_map(query));
        map.insert(
            "fragment".into(),
            parsed.fragment().map_or(Dynamic::UNIT, text),
        );
        Ok(map)
    }

    /// Percent-encodes every byte of `s` except the unreserved `A-Z a-z 0-9 - . _ ~`.
    #[rhai_fn(return_raw)]
    pub fn encode_component(ctx: NativeCallContext, s: &str) -> Result<String, Box<EvalAltResult>> {
        crate::bounded::ensure_string_len(ctx.engine(), encoded_len(s))?;
        Ok(encode(s))
    }

    /// Decodes the `%XX` sequences of `s`; throws if the result is not UTF-8.
    #[rhai_fn(return_raw)]
    pub fn decode_component(s: &str) -> Result<String, Box<EvalAltResult>> {
        decode(s)
    }

    /// A query string (`a=1&b=x%20y`) from `map`, keys in map order, values as strings.
    #[rhai_fn(pure, return_raw)]
    pub fn build_query(
        ctx: NativeCallContext,
        map: &mut Map,
    ) -> Result<String, Box<EvalAltResult>> {
        // Measured pair by pair before it is written: one shared string in many
        // entries would otherwise encode to gigabytes.
        let max = crate::bounded::max_string(ctx.engine());
        let mut out = String::new();
        for (key, value) in map.iter() {
            let text = match value.read_lock::<ImmutableString>() {
                Some(s) => s.clone(),
                None => {
                    let (text, _) = crate::bounded::text_within(max.saturating_add(1), |out| {
                        use std::fmt::Write as _;
                        write!(out, "{value}")
                    });
                    text.into()
                }
            };
            let len = out.len() + 2 + encoded_len(key) + encoded_len(&text);
            crate::bounded::ensure_string_len(ctx.engine(), len)?;
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&encode(key));
            out.push('=');
            out.push_str(&encode(&text));
        }
        Ok(out)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(url_ns)
}

#[cfg(test)]
mod tests {
    use rhai::{Dynamic, Map, INT};

    use crate::stdlib::test_support::{eval, eval_err};

    fn field(map: &Map, key: &str) -> Dynamic {
        map.get(key).cloned().unwrap_or(Dynamic::from("<missing>"))
    }

    #[test]
    fn parse_a_full_url() {
        let map = eval::<Map>(
            r#"url::parse("https://joe:secret@Example.COM:8443/a/b%20c?x=1&y=a+b&y=2&e=%C3%A9#frag")"#,
        );
        assert_eq!(map.len(), 7);
        assert_eq!(field(&map, "scheme").to_string(), "https");
        assert_eq!(field(&map, "username").to_string(), "joe");
        assert_eq!(field(&map, "host").to_string(), "example.com");
        assert_eq!(field(&map, "port").as_int(), Ok(8443));
        assert_eq!(field(&map, "path").to_string(), "/a/b%20c");
        assert_eq!(field(&map, "fragment").to_string(), "frag");
        let query = field(&map, "query").cast::<Map>();
        assert_eq!(query.len(), 3);
        assert_eq!(field(&query, "x").to_string(), "1");
        assert_eq!(field(&query, "y").to_string(), "2");
        assert_eq!(field(&query, "e").to_string(), "é");
        assert!(!map.contains_key("password"));
    }

    #[test]
    fn parse_defaults_and_absent_parts() {
        assert_eq!(
            eval::<INT>(r#"url::parse("https://example.com").port"#),
            443
        );
        assert_eq!(eval::<INT>(r#"url::parse("http://example.com/").port"#), 80);
        assert_eq!(
            eval::<String>(r#"url::parse("https://example.com").path"#),
            "/"
        );
        assert!(eval::<bool>(
            r#"url::parse("https://example.com").fragment == ()"#
        ));
        assert_eq!(
            eval::<INT>(r#"url::parse("https://example.com").query.len()"#),
            0
        );
        assert_eq!(
            eval::<String>(r#"url::parse("https://example.com").username"#),
            ""
        );
        let map = eval::<Map>(r#"url::parse("mailto:joe@example.com")"#);
        assert!(field(&map, "host").is_unit());
        assert!(field(&map, "port").is_unit());
        assert_eq!(field(&map, "path").to_string(), "joe@example.com");
        assert!(eval::<bool>(r#"url::parse("foo://h/x").port == ()"#));
    }

    #[test]
    fn parse_refuses_bad_urls() {
        for bad in [
            "",
            "/relative",
            "not a url",
            "http://",
            "https://exa mple.com",
            "http://[::1",
        ] {
            let message = eval_err(&format!("url::parse({bad:?})"));
            assert!(
                message.starts_with("url: invalid URL: "),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn encode_component_keeps_only_unreserved() {
        assert_eq!(
            eval::<String>(r#"url::encode_component("a b&c=d/é~-._+")"#),
            "a%20b%26c%3Dd%2F%C3%A9~-._%2B"
        );
        assert_eq!(eval::<String>(r#"url::encode_component("")"#), "");
    }

    #[test]
    fn decode_component_round_trips() {
        assert_eq!(
            eval::<String>(r#"url::decode_component("a%20b%26c%3dd%2F%C3%A9+")"#),
            "a b&c=d/é+"
        );
        assert_eq!(eval::<String>(r#"url::decode_component("100%")"#), "100%");
        assert_eq!(eval::<String>(r#"url::decode_component("%zz%4")"#), "%zz%4");
        assert_eq!(
            eval::<String>(r#"url::decode_component(url::encode_component("ü € x"))"#),
            "ü € x"
        );
    }

    #[test]
    fn decode_component_refuses_invalid_utf8() {
        for bad in ["%FF", "%C3", "a%80b"] {
            assert_eq!(
                eval_err(&format!("url::decode_component({bad:?})")),
                "url: decoded text is not valid UTF-8"
            );
        }
    }

    #[test]
    fn build_query_from_a_map() {
        assert_eq!(
            eval::<String>(r#"url::build_query(#{a: 1, b: "x y", "c&d": true, e: ()})"#),
            "a=1&b=x%20y&c%26d=true&e="
        );
        assert_eq!(eval::<String>("url::build_query(#{})"), "");
        assert_eq!(
            eval::<String>(r#"const Q = #{z: "é"}; url::build_query(Q)"#),
            "z=%C3%A9"
        );
    }
}
