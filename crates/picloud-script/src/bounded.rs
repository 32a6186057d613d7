//! Expansions: the places where a value's text can be far larger than the value.
//!
//! Strings are shared by reference, so a map of 10,000 entries can hold one 1 MiB
//! string 10,000 times for the price of 10,000 pointers, and anything that writes the
//! map out (JSON, `to_string`, a log line, a store write, an HTTP body) would produce
//! 10 GB inside a single call, before the run's memory limit is next looked at. Every
//! such expansion here writes into a buffer that refuses to grow past its limit, so the
//! work done and the memory taken stay within the limit, whatever the value holds.

use std::fmt::{self, Write as _};
use std::io;

use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};

use crate::convert::AsJson;

type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// Text that stops growing at `cap` bytes: writes past it fail (which ends any
/// `Display`/`Debug`/serde walk in progress) and are remembered.
pub(crate) struct CappedText {
    text: String,
    cap: usize,
    overflowed: bool,
}

impl CappedText {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            text: String::new(),
            cap,
            overflowed: false,
        }
    }

    /// The text written, cut at `cap` bytes (on a character boundary), and whether
    /// everything fitted.
    pub(crate) fn finish(self) -> (String, bool) {
        (self.text, !self.overflowed)
    }
}

impl fmt::Write for CappedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.cap - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
        self.overflowed = true;
        Err(fmt::Error)
    }
}

/// What `write` writes, cut at `cap` bytes, and whether all of it fitted.
pub(crate) fn text_within(
    cap: usize,
    write: impl FnOnce(&mut CappedText) -> fmt::Result,
) -> (String, bool) {
    let mut out = CappedText::new(cap);
    // An error here is the cap (or a value with no text form, which writes nothing).
    let _ = write(&mut out);
    out.finish()
}

/// A byte sink that stops at `cap` bytes, for serde.
struct CappedBytes {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl io::Write for CappedBytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.cap - self.bytes.len() {
            self.overflowed = true;
            return Err(io::Error::other("size limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a value could not be written as JSON within a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonOutError {
    #[error("its JSON text is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    NotJson(String),
    /// Past `picloud_core::json::MAX_DEPTH` (only values handed to a service).
    #[error(
        "it nests deeper than {} levels of arrays and maps",
        picloud_core::json::MAX_DEPTH
    )]
    TooDeep,
}

/// `value` as JSON text of at most `cap` bytes.
pub(crate) fn json_bytes(value: &Dynamic, cap: usize) -> Result<Vec<u8>, JsonOutError> {
    let mut sink = CappedBytes {
        bytes: Vec::new(),
        cap,
        overflowed: false,
    };
    match serde_json::to_writer(&mut sink, &AsJson::new(value)) {
        Ok(()) => Ok(sink.bytes),
        Err(_) if sink.overflowed => Err(JsonOutError::TooLarge(cap)),
        Err(e) => Err(JsonOutError::NotJson(e.to_string())),
    }
}

/// `value` as a JSON tree whose text is at most `cap` bytes: measured first, without
/// keeping the text, so the tree is only built when it is known to be bounded.
pub fn json_value(value: &Dynamic, cap: usize) -> Result<serde_json::Value, JsonOutError> {
    struct Count {
        len: usize,
        cap: usize,
    }
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.len += buf.len();
            if self.len > self.cap {
                return Err(io::Error::other("size limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count { len: 0, cap };
    match serde_json::to_writer(&mut count, &AsJson::new(value)) {
        Ok(()) => {}
        Err(_) if count.len > cap => return Err(JsonOutError::TooLarge(cap)),
        Err(e) => return Err(JsonOutError::NotJson(e.to_string())),
    }
    let json = serde_json::to_value(AsJson::new(value))
        .map_err(|e| JsonOutError::NotJson(e.to_string()))?;
    picloud_core::json::check_depth(&json).map_err(|_| JsonOutError::TooDeep)?;
    Ok(json)
}

/// The engine's string limit, `usize::MAX` when it has none.
pub(crate) fn max_string(engine: &Engine) -> usize {
    match engine.max_string_size() {
        0 => usize::MAX,
        n => n,
    }
}

/// Rhai's "Length of string" refusal: a value grew (or would grow) past the limit.
pub(crate) fn string_too_large() -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge("Length of string".into(), rhai::Position::NONE).into()
}

/// Refuses a string of `len` bytes before it is built.
pub(crate) fn ensure_string_len(engine: &Engine, len: usize) -> Fallible<()> {
    if len > max_string(engine) {
        return Err(string_too_large());
    }
    Ok(())
}

/// Rhai's own text for a Blob (`[01 02 … 08 09]`), written as it goes.
struct BlobText<'a>(&'a [u8]);

impl fmt::Debug for BlobText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 && i % 8 == 0 {
                f.write_str(" ")?;
            }
            write!(f, "{byte:02x}")?;
        }
        f.write_str("]")
    }
}

/// Rhai's text for an array, map or Blob (`[1, "a"]`, `#{"k": 1}`, `[01 02]`), cut one
/// byte past `cap`, so that whoever receives it refuses a string over the limit. It must
/// not fail: Rhai answers a failed `to_string` by formatting the whole value itself,
/// without any bound.
fn capped_text(cap: usize, write: impl FnOnce(&mut CappedText) -> fmt::Result) -> ImmutableString {
    text_within(cap.saturating_add(1), write).0.into()
}

pub(crate) fn register(engine: &mut Engine) {
    // `to_string` and `to_debug` (which interpolation and `string + value` call too), at
    // the string limit; `print` and `debug`, whose text becomes a log line that is cut
    // anyway, at the log line's length.
    fn limit(ctx: &NativeCallContext, name: &str) -> usize {
        match name {
            "print" | "debug" => crate::state::MAX_LOG_LINE_BYTES,
            _ => max_string(ctx.engine()),
        }
    }
    for name in ["to_string", "to_debug", "print", "debug"] {
        engine
            .register_fn(name, move |ctx: NativeCallContext, a: &mut Array| {
                capped_text(limit(&ctx, name), |out| write!(out, "{a:?}"))
            })
            .register_fn(name, move |ctx: NativeCallContext, m: &mut Map| {
                capped_text(limit(&ctx, name), |out| write!(out, "#{m:?}"))
            })
            .register_fn(name, move |ctx: NativeCallContext, b: &mut Blob| {
                capped_text(limit(&ctx, name), |out| write!(out, "{:?}", BlobText(b)))
            });
    }
    // Rhai's own `map.to_json()` wrote the whole text with serde, unbounded: it is
    // `json::encode` under another name.
    engine.register_fn(
        "to_json",
        |ctx: NativeCallContext, m: &mut Map| -> Fallible<String> {
            let value = Dynamic::from_map(m.clone());
            match json_bytes(&value, max_string(ctx.engine())) {
                Ok(bytes) => String::from_utf8(bytes).map_err(|e| format!("json: {e}").into()),
                Err(JsonOutError::TooLarge(_)) => Err(string_too_large()),
                Err(e) => Err(format!("json: {e}").into()),
            }
        },
    );
    register_replace(engine);
}

/// `replace` with its output measured first: 100,000 matches of a 10,000-byte
/// substitute would otherwise build a gigabyte inside one call.
fn register_replace(engine: &mut Engine) {
    fn replaced(
        ctx: &NativeCallContext,
        s: &mut ImmutableString,
        find: &str,
        with: &str,
    ) -> Fallible<()> {
        if s.is_empty() {
            return Ok(());
        }
        if with.len() > find.len() {
            let matches = s.matches(find).count();
            let growth = matches.saturating_mul(with.len() - find.len());
            ensure_string_len(ctx.engine(), s.len().saturating_add(growth))?;
        }
        *s = s.replace(find, with).into();
        Ok(())
    }
    engine
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, with: &str| {
                replaced(&ctx, s, find, with)
            },
        )
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, with: char| {
                replaced(&ctx, s, find, with.encode_utf8(&mut [0; 4]))
            },
        )
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: char, with: &str| {
                replaced(&ctx, s, find.encode_utf8(&mut [0; 4]), with)
            },
        )
        .register_fn(
            "replace",
            |ctx: NativeCallContext, s: &mut ImmutableString, find: char, with: char| {
                replaced(
                    &ctx,
                    s,
                    find.encode_utf8(&mut [0; 4]),
                    with.encode_utf8(&mut [0; 4]),
                )
            },
        );
}

#[cfg(test)]
mod tests {
    use rhai::INT;

    use crate::stdlib::test_support::{eval, eval_err, route, run, run_failure};
    use picloud_core::model::LogLevel;

    use crate::{FailureKind, Limit};

    /// One 1 MiB string shared by 10,000 entries: 10,000 pointers to the script, 10 GB
    /// to anything that writes it out. This used to abort the server.
    const SHARED: &str = r#"let s = ""; s.pad(1000000, "a");
        let m = #{}; for i in 0..10000 { m[`${i}`] = s; }"#;

    fn shared(then: &str) -> String {
        format!("{SHARED} {then}")
    }

    #[test]
    fn writing_out_a_shared_string_stops_at_the_limit() {
        for then in [
            "json::encode(m)",
            "m.to_string()",
            "m.to_debug()",
            "`${m}`",
            r#""" + m"#,
            "let a = m.values(); a.to_string()",
            "let a = m.values(); `${a}`",
            "url::build_query(m)",
            "throw m.to_string();",
        ] {
            let failure = run_failure(&shared(then));
            assert_eq!(
                failure.kind,
                FailureKind::LimitExceeded(Limit::DataSize),
                "{then}: {failure:?}"
            );
            assert!(
                failure.message.contains("Length of string too large"),
                "{then}: {failure:?}"
            );
        }
    }

    /// Log lines are cut anyway: a large value's line is cut, not refused, and never
    /// built whole.
    #[test]
    fn logging_a_shared_string_is_cut_not_built() {
        for then in [
            "log::info(m);",
            "print(m);",
            "debug(m);",
            "log::error(m.values());",
        ] {
            let report = run(&shared(then));
            assert!(report.outcome.is_ok(), "{then}: {:?}", report.outcome);
            let line = &report.logs[0];
            assert!(line.message.ends_with("… (truncated)"), "{then}");
            assert!(line.message.len() < 5000, "{then}: {}", line.message.len());
            assert!(matches!(
                line.level,
                LogLevel::Info | LogLevel::Trace | LogLevel::Error
            ));
        }
    }

    /// A thrown value's text is kept only as far as an error message is kept.
    #[test]
    fn a_thrown_shared_string_is_cut() {
        let failure = run_failure(&shared("throw m;"));
        assert_eq!(failure.kind, FailureKind::Error);
        assert!(failure.message.ends_with("… (truncated)"), "{failure:?}");
        assert!(failure.message.len() < 20_000);
    }

    /// A route's answer is written within its limit (the Blob cap).
    #[test]
    fn answering_with_a_shared_string_stops_at_the_limit() {
        let failure = route(&shared("m")).outcome.expect_err("refused");
        assert_eq!(failure.kind, FailureKind::LimitExceeded(Limit::DataSize));
        assert!(
            failure.message.contains("16777216 bytes as JSON"),
            "{failure:?}"
        );
    }

    /// `replace` measures what it would build: 100,000 matches of a 10,000-character
    /// substitute (1 GB, 7 s) is refused at once.
    #[test]
    fn replace_is_measured_before_it_builds() {
        let failure = run_failure(
            r#"let s = ""; s.pad(100000, "a"); let r = ""; r.pad(10000, "b");
               s.replace("a", r); s.len()"#,
        );
        assert_eq!(failure.kind, FailureKind::LimitExceeded(Limit::DataSize));
        for (script, want) in [
            (r#"let s = "a-b-c"; s.replace("-", "+="); s"#, "a+=b+=c"),
            (r#"let s = "a-b-c"; s.replace('-', "::"); s"#, "a::b::c"),
            (r#"let s = "a-b-c"; s.replace("-", '😀'); s"#, "a😀b😀c"),
            (r#"let s = "a-b-c"; s.replace('-', 'é'); s"#, "aébéc"),
            (r#"let s = "abc"; s.replace("", "."); s"#, ".a.b.c."),
            (r#"let s = ""; s.replace("", "x"); s"#, ""),
        ] {
            assert_eq!(eval::<String>(script), want, "{script}");
        }
    }

    #[test]
    fn encoders_refuse_text_past_the_limit_before_writing_it() {
        for script in [
            "base64::encode(blob(1048576, 1))",
            "base64::encode_url(blob(1048576, 1))",
            "hex::encode(blob(600000, 1))",
            r#"let s = ""; s.pad(400000, "é"); url::encode_component(s)"#,
            r#"let f = ""; f.pad(100000, "%c"); time::format(0, f)"#,
        ] {
            let err = eval_err(script);
            assert!(
                err.contains("Length of string too large"),
                "{script}: {err}"
            );
        }
        assert_eq!(
            eval::<String>(r#"time::format(0, "%Y-%m-%d")"#),
            "1970-01-01"
        );
        assert_eq!(
            eval::<INT>("base64::encode(blob(786432, 1)).len()"),
            1_048_576
        );
    }

    /// The text of arrays, maps and Blobs is Rhai's own, within the limit.
    #[test]
    fn text_of_values_is_rhai_s() {
        assert_eq!(
            eval::<String>(
                r#"let a = [1, "a", 'c', 1.5, (), true, #{x: [blob(2, 1)]}]; a.to_string()"#
            ),
            r#"[1, "a", 'c', 1.5, (), true, #{"x": [[0101]]}]"#
        );
        assert_eq!(
            eval::<String>(r#"`${#{b: 2, a: "x"}}`"#),
            r#"#{"a": "x", "b": 2}"#
        );
        assert_eq!(
            eval::<String>("blob(9, 255).to_debug()"),
            "[ffffffffffffffff ff]"
        );
        assert_eq!(eval::<String>(r#""n=" + [1, 2]"#), "n=[1, 2]");
    }
}

#[cfg(test)]
mod probe_tests {
    use rhai::INT;

    use crate::stdlib::test_support::{eval, eval_err, route, run_failure};
    use crate::{FailureKind, Limit};

    #[test]
    fn to_json_and_parse_json_are_bounded_like_json() {
        let failure = run_failure(
            r#"let s = ""; s.pad(1000000, "a"); let m = #{};
               for i in 0..10000 { m[`${i}`] = s; } m.to_json()"#,
        );
        assert_eq!(failure.kind, FailureKind::LimitExceeded(Limit::DataSize));
        assert_eq!(
            eval::<String>("#{a: [1, ()]}.to_json()"),
            r#"{"a":[1,null]}"#
        );
        let err = eval_err("let a = []; a.pad(100001, 0); parse_json(json::encode(a))");
        assert!(err.contains("Size of array too large"), "{err}");
        assert_eq!(eval::<INT>(r#"parse_json("{\"n\": 2}").n"#), 2);
    }

    #[test]
    fn response_headers_are_bounded_in_all() {
        for script in [
            r#"let v = ""; v.pad(65000, "a"); let h = #{};
               for i in 0..10000 { h["x-h" + i] = v; } #{status: 200, headers: h}"#,
            r#"let h = #{}; for i in 0..101 { h["x-h" + i] = "v"; } #{status: 200, headers: h}"#,
        ] {
            let failure = route(script).outcome.expect_err("refused");
            assert!(
                failure.message.contains("response headers take more than"),
                "{failure:?}"
            );
        }
        // 204 and 304 carry no body, whatever the script gave.
        let sent = route(r#"#{status: 204, body: "x"}"#)
            .outcome
            .expect("answer");
        assert!(sent.body.is_empty() && sent.headers.is_empty(), "{sent:?}");
    }
}
