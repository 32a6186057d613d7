//! Where values grow: the checks the engine cannot make itself.
//!
//! Rhai (with PiCloud's patch, `vendor/rhai/PICLOUD.md`) holds each string, array, map
//! and Blob to its limit on its own, in O(1), after every call and assignment that can
//! grow it. Two growths need more than that, because one call makes many copies:
//! `pad` (each copy of an array or map item is a deep copy) and `blob.to_array()`
//! (sixteen bytes of array per byte of Blob). Both are refused here before they
//! allocate. What a run holds in total is bounded by its memory limit, read on every
//! operation (`state::memory_exceeded`).

use picloud_core::config::ScriptLimits;
use rhai::{
    Array, Blob, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position,
    INT,
};

type SizeResult<T> = Result<T, Box<EvalAltResult>>;

pub(crate) fn configure(engine: &mut Engine, limits: &ScriptLimits) {
    engine.set_max_string_size(limits.max_string_bytes);
    engine.set_max_array_size(limits.max_array_len);
    engine.set_max_map_size(limits.max_map_len);
    engine.set_max_blob_size(limits.max_blob_bytes);
    engine
        .register_fn("pad", pad)
        .register_fn("to_array", to_array);
    register_splits(engine);
}

/// Rhai's string splits (`split`, `split_rev`, `to_chars`), with the number of pieces
/// counted before any is made: a 1 MiB string split into characters is a million
/// strings, about 56 MiB, which Rhai would build before refusing the array.
fn register_splits(engine: &mut Engine) {
    fn pieces<'a>(
        ctx: &NativeCallContext,
        split: impl Fn() -> Box<dyn Iterator<Item = &'a str> + 'a>,
    ) -> SizeResult<Array> {
        ensure_array_len(ctx.engine(), split().count())?;
        Ok(split()
            .map(|p| Dynamic::from(ImmutableString::from(p)))
            .collect())
    }
    // Rhai answers `[s]` for an empty string, a delimiter that does not occur, or fewer
    // than two segments.
    fn whole(s: &ImmutableString) -> Array {
        vec![Dynamic::from(s.clone())]
    }
    fn segments(n: INT) -> Option<usize> {
        (n > 1).then(|| usize::try_from(n).unwrap_or(usize::MAX))
    }
    engine
        .register_fn("to_chars", |ctx: NativeCallContext, s: &str| {
            ensure_array_len(ctx.engine(), s.chars().count())?;
            Ok::<Array, Box<EvalAltResult>>(s.chars().map(Dynamic::from).collect())
        })
        .register_fn(
            "split",
            |ctx: NativeCallContext, s: &mut ImmutableString| {
                if s.is_empty() {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.split_whitespace()))
            },
        )
        .register_fn(
            "split",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: &str| {
                if s.is_empty() || (!d.is_empty() && !s.contains(d)) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.split(d)))
            },
        )
        .register_fn(
            "split",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: &str, n: INT| {
                let Some(n) = segments(n) else {
                    return Ok(whole(s));
                };
                if s.is_empty() || (!d.is_empty() && !s.contains(d)) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.splitn(n, d)))
            },
        )
        .register_fn(
            "split",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: char| {
                if s.is_empty() || !s.contains(d) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.split(d)))
            },
        )
        .register_fn(
            "split",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: char, n: INT| {
                let Some(n) = segments(n) else {
                    return Ok(whole(s));
                };
                if s.is_empty() || !s.contains(d) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.splitn(n, d)))
            },
        )
        .register_fn(
            "split_rev",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: &str| {
                if s.is_empty() || (!d.is_empty() && !s.contains(d)) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.rsplit(d)))
            },
        )
        .register_fn(
            "split_rev",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: &str, n: INT| {
                let Some(n) = segments(n) else {
                    return Ok(whole(s));
                };
                if s.is_empty() || (!d.is_empty() && !s.contains(d)) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.rsplitn(n, d)))
            },
        )
        .register_fn(
            "split_rev",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: char| {
                if s.is_empty() || !s.contains(d) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.rsplit(d)))
            },
        )
        .register_fn(
            "split_rev",
            |ctx: NativeCallContext, s: &mut ImmutableString, d: char, n: INT| {
                let Some(n) = segments(n) else {
                    return Ok(whole(s));
                };
                if s.is_empty() || !s.contains(d) {
                    return Ok(whole(s));
                }
                let s = s.clone();
                pieces(&ctx, || Box::new(s.rsplitn(n, d)))
            },
        );
}

fn to_array(ctx: NativeCallContext, b: &mut Blob) -> SizeResult<Array> {
    ensure_array_len(ctx.engine(), b.len())?;
    Ok(b.iter()
        .map(|&byte| Dynamic::from_int(INT::from(byte)))
        .collect())
}

fn over(limit: usize, len: usize) -> bool {
    limit != 0 && len > limit
}

fn too_large(what: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.into(), Position::NONE).into()
}

fn ensure_array_len(engine: &Engine, len: usize) -> SizeResult<()> {
    if over(engine.max_array_size(), len) {
        return Err(too_large("Size of array"));
    }
    Ok(())
}

/// `pad(len, item)` with Rhai's semantics, refused before the copies are made when the
/// array would pass its limit or the copies the run's memory limit.
fn pad(ctx: NativeCallContext, a: &mut Array, len: INT, item: Dynamic) -> SizeResult<()> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(());
    };
    if len <= a.len() {
        return Ok(());
    }
    ensure_array_len(ctx.engine(), len)?;
    let copies = len - a.len();
    let bytes = copies.saturating_mul(heap_bytes(&item).saturating_add(DYNAMIC_BYTES));
    if bytes > crate::state::memory_left() {
        return Err(crate::state::memory_stop());
    }
    a.resize(len, item);
    Ok(())
}

/// What one `Dynamic` takes in place.
const DYNAMIC_BYTES: usize = std::mem::size_of::<Dynamic>();

/// Roughly what a copy of `value` allocates: arrays, maps and Blobs are copied deeply;
/// strings are shared, so a copy of one costs nothing.
fn heap_bytes(value: &Dynamic) -> usize {
    if let Some(b) = value.read_lock::<Blob>() {
        return b.len();
    }
    if let Some(items) = value.read_lock::<Array>() {
        return items.iter().fold(items.len() * DYNAMIC_BYTES, |acc, v| {
            acc.saturating_add(heap_bytes(v))
        });
    }
    if let Some(map) = value.read_lock::<Map>() {
        // A key, a value and the tree's share of a node per entry.
        const ENTRY: usize = 64;
        return map.values().fold(map.len() * ENTRY, |acc, v| {
            acc.saturating_add(heap_bytes(v))
        });
    }
    0
}

/// Refuses a value the host built from text the script handed over (decoded JSON)
/// when any string, array, map or Blob in it is past what a script may build.
pub(crate) fn ensure_within_limits(engine: &Engine, value: &Dynamic) -> SizeResult<()> {
    if let Some(s) = value.read_lock::<ImmutableString>() {
        return crate::bounded::ensure_string_len(engine, s.len());
    }
    if let Some(b) = value.read_lock::<Blob>() {
        if over(engine.max_blob_size(), b.len()) {
            return Err(too_large("Size of BLOB"));
        }
        return Ok(());
    }
    if let Some(items) = value.read_lock::<Array>() {
        ensure_array_len(engine, items.len())?;
        return items
            .iter()
            .try_for_each(|v| ensure_within_limits(engine, v));
    }
    if let Some(map) = value.read_lock::<Map>() {
        if over(engine.max_map_size(), map.len()) {
            return Err(too_large("Size of object map"));
        }
        return map
            .values()
            .try_for_each(|v| ensure_within_limits(engine, v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rhai::INT;

    use crate::stdlib::test_support::{engine, eval, eval_err, run_failure};
    use crate::{FailureKind, Limit};

    /// Every way a value grows stops at its own limit, with Rhai's refusal (not a
    /// timeout, not a crash). Before PiCloud's Rhai patch, the `m[k] = v` and `m.x[k] = v`
    /// loops grew maps without bound and the `push` loop ran past the time limit.
    #[test]
    fn values_stop_at_their_limits_wherever_they_grow() {
        let array = "Size of array too large";
        let map = "Size of object map too large";
        let string = "Length of string too large";
        let blob = "Size of BLOB too large";
        for (script, refusal) in [
            ("let a = []; loop { a.push(1); }", array),
            ("let a = []; loop { a += 1; }", array),
            // (Inserting at the front moves every item: quadratic by nature.)
            ("let a = [0]; loop { a.insert(-1, 1); }", array),
            ("let a = [1]; loop { a.append(a); }", array),
            ("let a = [1]; loop { a += a; }", array),
            ("let a = [1]; loop { let b = a + a; a = b; }", array),
            ("let a = []; a.pad(100001, 0);", array),
            ("let a = [1]; loop { a = a.map(|x| x) + a; }", array),
            ("let b = blob(100001, 0); b.to_array()", array),
            (
                "let a = []; a.pad(50001, 0); json::decode(json::encode(a + a))",
                array,
            ),
            ("let m = #{}; for i in 0..100001 { m[`${i}`] = i; }", map),
            (
                "let m = #{x: #{}}; for i in 0..100001 { m.x[`${i}`] = i; }",
                map,
            ),
            (
                "let m = #{}; for i in 0..100001 { m.mixin(#{}); m[`k${i}`] = 1; }",
                map,
            ),
            (r#"let s = "x"; loop { s += s; }"#, string),
            (r#"let s = "x"; loop { s = s + s; }"#, string),
            (r#"let s = "x"; loop { s = `${s}${s}`; }"#, string),
            (r#"let s = "x"; loop { s.append(s); }"#, string),
            (r#"let s = ""; s.pad(1048577, "a");"#, string),
            (r#"let s = ""; s.pad(1048576, "a"); s[0] = '😀';"#, string),
            (
                r#"let s = ""; s.pad(1048576, "a"); s.to_upper(); s + 'b'"#,
                string,
            ),
            ("let b = blob(16777217, 0);", blob),
            ("let b = blob(16777216, 1); b.push(1);", blob),
            ("let b = blob(16777216, 1); b += 1;", blob),
            ("let b = blob(16777216, 1); b += blob(1, 1);", blob),
        ] {
            let failure = run_failure(script);
            assert_eq!(
                failure.kind,
                FailureKind::LimitExceeded(Limit::DataSize),
                "{script}: {failure:?}"
            );
            assert!(failure.message.contains(refusal), "{script}: {failure:?}");
        }
    }

    /// Each value is held to the limits on its own: values inside it count for
    /// themselves (what the run holds in all is the memory limit's business).
    #[test]
    fn values_are_measured_on_their_own() {
        assert_eq!(
            eval::<INT>("let a = []; a.pad(99999, 0); a.push(1); a.len()"),
            100_000
        );
        assert_eq!(
            eval::<INT>("let a = []; a.pad(60000, 0); let b = [a, a]; b[0].len() + b[1].len()"),
            120_000
        );
        assert_eq!(
            eval::<INT>(
                r#"let s = ""; s.pad(1000000, "a"); let m = #{};
                   for i in 0..10000 { m[`${i}`] = s; } m.len()"#
            ),
            10_000
        );
        // A `len()` in a loop no longer walks the array each time (it was quadratic).
        assert_eq!(
            eval::<INT>(
                "let a = []; while a.len() < 100000 { a.push(a.len()); } a[99999] + a.len()"
            ),
            199_999
        );
    }

    #[test]
    fn overrides_keep_rhai_semantics() {
        assert_eq!(
            eval::<String>(
                r#"let x = [1, 2, 3]; x.insert(0, "a"); x.insert(2, true); x.insert(-2, 42);
                   x.insert(99, "end"); x.insert(-99, "start"); json::encode(x)"#
            ),
            r#"["start","a",1,true,42,2,3,"end"]"#
        );
        assert_eq!(
            eval::<String>("let x = [1]; x.append([2, 3]); x.pad(5, 0); json::encode(x + [9])"),
            "[1,2,3,0,0,9]"
        );
        assert_eq!(
            eval::<String>("json::encode(blob(3, 7).to_array())"),
            "[7,7,7]"
        );
    }

    /// Blobs have their own cap: the bytes of a 5 MiB body or file fit, and arrays do
    /// not grow to millions of items with them.
    #[test]
    fn blobs_use_the_blob_cap() {
        assert_eq!(
            eval::<INT>("let b = blob(5242880, 1); b += b; b.len()"),
            10_485_760
        );
        let err = eval_err("let b = blob(16777216, 1); b.push(1); b.len()");
        assert!(err.contains("Size of BLOB"), "{err}");
        assert_eq!(engine().max_array_size(), 100_000);
        assert_eq!(engine().max_blob_size(), 16 << 20);
    }

    /// The splits keep Rhai's answers, and count their pieces before making them.
    #[test]
    fn splits_count_before_they_build() {
        for (script, want) in [
            (r#"json::encode("a b  c".split())"#, r#"["a","b","c"]"#),
            (r#"json::encode("".split())"#, r#"[""]"#),
            (
                r#"json::encode("a,b,,c".split(","))"#,
                r#"["a","b","","c"]"#,
            ),
            (r#"json::encode("abc".split(","))"#, r#"["abc"]"#),
            (r#"json::encode("abc".split(""))"#, r#"["","a","b","c",""]"#),
            (r#"json::encode("a,b,c".split(",", 2))"#, r#"["a","b,c"]"#),
            (r#"json::encode("a,b,c".split(",", 1))"#, r#"["a,b,c"]"#),
            (r#"json::encode("a,b,c".split(','))"#, r#"["a","b","c"]"#),
            (r#"json::encode("a,b,c".split(',', 2))"#, r#"["a","b,c"]"#),
            (
                r#"json::encode("a,b,c".split_rev(","))"#,
                r#"["c","b","a"]"#,
            ),
            (
                r#"json::encode("a,b,c".split_rev(",", 2))"#,
                r#"["c","a,b"]"#,
            ),
            (
                r#"json::encode("a,b,c".split_rev(','))"#,
                r#"["c","b","a"]"#,
            ),
            (
                r#"json::encode("a,b,c".split_rev(',', 2))"#,
                r#"["c","a,b"]"#,
            ),
            (r#"json::encode("hé".to_chars())"#, r#"["h","é"]"#),
        ] {
            assert_eq!(eval::<String>(script), want, "{script}");
        }
        for script in [
            r#"let s = ""; s.pad(100001, "a"); s.split("")"#,
            r#"let s = ""; s.pad(200001, "a,"); s.split(',')"#,
            r#"let s = ""; s.pad(200001, "a,"); s.split_rev(",", 150000)"#,
            r#"let s = ""; s.pad(200001, "a "); s.split()"#,
            r#"let s = ""; s.pad(100001, "a"); s.to_chars()"#,
        ] {
            let err = eval_err(script);
            assert!(err.contains("Size of array too large"), "{script}: {err}");
        }
    }

    /// `pad` makes deep copies in one call: refused before it allocates when they would
    /// not fit in the run's memory limit (a hundred thousand copies of a 100,000-item
    /// array would be 160 GB).
    #[test]
    fn pad_is_refused_before_copies_past_the_memory_limit() {
        for script in [
            "let a = []; a.pad(100000, 0); let b = []; b.pad(100000, a);",
            "let a = []; a.pad(1000, blob(1048576, 0));",
            "let m = #{}; for i in 0..1000 { m[`${i}`] = [1, 2, 3]; } let b = []; b.pad(100000, m);",
        ] {
            let failure = run_failure(script);
            assert_eq!(
                failure.kind,
                FailureKind::LimitExceeded(Limit::Memory),
                "{script}: {failure:?}"
            );
        }
    }

    /// `"".pad(n, "")` looped for ever inside Rhai (found by the fuzz pass): an empty
    /// padding now leaves the string as it is.
    #[test]
    fn padding_a_string_with_nothing_ends() {
        let out: String = crate::stdlib::test_support::eval(
            r#"let s = "ab"; s.pad(10000, ""); let e = ""; e.pad(10, ""); s + "|" + e"#,
        );
        assert_eq!(out, "ab|");
    }
}
