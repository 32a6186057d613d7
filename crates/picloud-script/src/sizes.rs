//! Array and Blob sizes.
//!
//! Rhai has one limit for arrays and Blobs (a Blob's bytes count as elements). Values
//! the host hands in, like a 10 MiB request body or an HTTP response, must be usable
//! by the script (SCRIPTING.md "Limits"), so that limit is set to the Blob cap, and
//! arrays are held to their own, smaller, limit here: every array function that grows
//! an array checks it before it allocates. Rhai's `+=` on arrays is a built-in
//! operator that cannot be overridden without slowing every operator by half
//! (measured); it is still checked by Rhai against the Blob cap, and the run's memory
//! and time limits bound it like anything else.

use picloud_core::config::ScriptLimits;
use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position, INT};

type SizeResult<T> = Result<T, Box<EvalAltResult>>;

pub(crate) fn configure(engine: &mut Engine, limits: &ScriptLimits) {
    engine.set_max_array_size(limits.max_array_len.max(limits.max_blob_bytes));
    // Kept as the engine's default tag so native functions can read it: an integer,
    // since every run starts with a copy of the tag (a custom type would cost an
    // allocation per run).
    engine.set_default_tag(Dynamic::from_int(
        INT::try_from(limits.max_array_len).unwrap_or(INT::MAX),
    ));

    engine
        .register_fn("push", push)
        .register_fn("insert", insert)
        .register_fn("append", append)
        .register_fn("+", concat)
        .register_fn("pad", pad)
        .register_fn("to_array", to_array);
}

fn push(ctx: NativeCallContext, a: &mut Array, item: Dynamic) -> SizeResult<()> {
    ensure_len(&ctx, a.len().saturating_add(1))?;
    a.push(item);
    Ok(())
}

fn insert(ctx: NativeCallContext, a: &mut Array, index: INT, item: Dynamic) -> SizeResult<()> {
    ensure_len(&ctx, a.len().saturating_add(1))?;
    a.insert(insert_position(a.len(), index), item);
    Ok(())
}

fn append(ctx: NativeCallContext, a: &mut Array, b: Array) -> SizeResult<()> {
    ensure_len(&ctx, a.len().saturating_add(b.len()))?;
    a.extend(b);
    Ok(())
}

fn concat(ctx: NativeCallContext, mut a: Array, b: Array) -> SizeResult<Array> {
    ensure_len(&ctx, a.len().saturating_add(b.len()))?;
    a.extend(b);
    Ok(a)
}

fn to_array(ctx: NativeCallContext, b: &mut Blob) -> SizeResult<Array> {
    ensure_len(&ctx, b.len())?;
    Ok(b.iter()
        .map(|&byte| Dynamic::from_int(INT::from(byte)))
        .collect())
}

/// The largest array a script may build (the engine's own limit is the Blob cap).
pub(crate) fn max_array_len(engine: &Engine) -> usize {
    engine
        .default_tag()
        .as_int()
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or_else(|| engine.max_array_size())
}

fn ensure_len(ctx: &NativeCallContext, len: usize) -> SizeResult<()> {
    let max = max_array_len(ctx.engine());
    if max != 0 && len > max {
        return Err(too_large("Size of array"));
    }
    Ok(())
}

fn too_large(what: &str) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.into(), Position::NONE).into()
}

/// Rhai's `insert` positions: a negative index counts from the end, anything past the
/// end appends.
fn insert_position(len: usize, index: INT) -> usize {
    if index >= 0 {
        usize::try_from(index).map_or(len, |i| i.min(len))
    } else {
        usize::try_from(index.unsigned_abs()).map_or(0, |back| len.saturating_sub(back))
    }
}

/// `pad(len, item)`: refused before the copies are made, since each copy of a Blob,
/// array or map item is a deep copy. Nested items count, as Rhai counts them.
fn pad(ctx: NativeCallContext, a: &mut Array, len: INT, item: Dynamic) -> SizeResult<()> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(());
    };
    if len <= a.len() {
        return Ok(());
    }
    let copies = len - a.len();
    let each = sizes(&item);
    let times = |n: usize| copies.saturating_mul(n);
    ensure_len(&ctx, a.len().saturating_add(times(1 + each.array_items)))?;
    let engine = ctx.engine();
    let over = |limit: usize, total: usize| limit != 0 && total > limit;
    if over(engine.max_array_size(), times(each.blob_bytes)) {
        return Err(too_large("Size of array/BLOB"));
    }
    if over(engine.max_map_size(), times(each.map_items)) {
        return Err(too_large("Size of object map"));
    }
    if over(engine.max_string_size(), times(each.string_bytes)) {
        return Err(too_large("Length of string"));
    }
    a.resize(len, item);
    Ok(())
}

/// Refuses a value the host built (parsed JSON, say) when it holds more array items,
/// nested ones included, than a script may build.
pub(crate) fn ensure_array_items(engine: &Engine, value: &Dynamic) -> SizeResult<()> {
    let max = max_array_len(engine);
    if max != 0 && sizes(value).array_items > max {
        return Err(too_large("Size of array"));
    }
    Ok(())
}

/// What a value holds: array items (nested ones included; a Blob is one item), Blob
/// bytes, map entries and string bytes, each summed over the whole value as Rhai sums
/// them.
#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    array_items: usize,
    blob_bytes: usize,
    map_items: usize,
    string_bytes: usize,
}

impl Sizes {
    fn add(self, other: Self) -> Self {
        Self {
            array_items: self.array_items + other.array_items,
            blob_bytes: self.blob_bytes + other.blob_bytes,
            map_items: self.map_items + other.map_items,
            string_bytes: self.string_bytes + other.string_bytes,
        }
    }
}

fn sizes(value: &Dynamic) -> Sizes {
    let z = Sizes::default();
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        return Sizes {
            string_bytes: s.len(),
            ..z
        };
    }
    if let Some(b) = value.read_lock::<Blob>() {
        return Sizes {
            blob_bytes: b.len(),
            ..z
        };
    }
    if let Some(items) = value.read_lock::<Array>() {
        // Every element is one of the array's items, and adds what it holds.
        let own = Sizes {
            array_items: items.len(),
            ..z
        };
        return items.iter().fold(own, |acc, v| acc.add(sizes(v)));
    }
    if let Some(map) = value.read_lock::<Map>() {
        // Every entry is one map item and adds what it holds; a Blob value also
        // counts as one array item, as Rhai counts it.
        let own = Sizes {
            map_items: map.len(),
            ..z
        };
        return map.values().fold(own, |acc, v| {
            let blob = Sizes {
                array_items: usize::from(v.is_blob()),
                ..z
            };
            acc.add(sizes(v)).add(blob)
        });
    }
    z
}

#[cfg(test)]
mod tests {
    use rhai::INT;

    use crate::stdlib::test_support::{engine, eval, eval_err};

    #[test]
    fn arrays_stop_at_their_limit_before_allocating() {
        for script in [
            "let a = []; loop { a.push(1); }",
            "let a = []; loop { a.insert(0, 1); }",
            "let a = [1]; loop { a.append(a); }",
            "let a = [1]; loop { let b = a + a; a = b; }",
            "let a = []; a.pad(100001, 0);",
            "let b = blob(100001, 0); b.to_array()",
            // Nested items count: 101 copies of a 1,000-item array.
            "let a = []; a.pad(1000, 0); let b = []; b.pad(101, a);",
            // So do the arrays of decoded JSON.
            "let a = []; a.pad(50000, [0]); json::decode(`[${json::encode(a)}, 0]`)",
        ] {
            // PiCloud's own refusal: Rhai's would say "Size of array/BLOB", and only at
            // the (much larger) Blob cap.
            let err = eval_err(script);
            assert!(err.contains("Size of array too large"), "{script}: {err}");
        }
        assert_eq!(
            eval::<INT>("let a = []; a.pad(99999, 0); a.push(1); a.len()"),
            100_000
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

    /// Blobs are held to the Blob cap, not the array limit: the bytes of a 5 MiB body
    /// or file fit, and padding copies are measured before they are made.
    #[test]
    fn blobs_use_the_blob_cap() {
        assert_eq!(
            eval::<INT>("let b = blob(5242880, 1); b += b; b.len()"),
            10_485_760
        );
        let err = eval_err("let b = blob(16777216, 1); b.push(1); b.len()");
        assert!(err.contains("Size of array/BLOB"), "{err}");
        let err = eval_err("let a = []; a.pad(1000, blob(1048576, 0));");
        assert!(err.contains("Size of array/BLOB"), "{err}");
        let err = eval_err(r#"let s = "x"; s.pad(200000, "y"); let a = []; a.pad(10, s);"#);
        assert!(err.contains("Length of string"), "{err}");
        assert!(engine().max_array_size() > 100_000);
    }
}
