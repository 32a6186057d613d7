//! `hex::*`: lower-case hexadecimal; decoding accepts either case and returns a Blob.

use rhai::plugin::*;
use rhai::{Blob, EvalAltResult};

/// `bytes` as hex, refused before it is written when the text would pass the string
/// limit.
fn encode(ctx: &NativeCallContext, bytes: &[u8]) -> Result<String, Box<EvalAltResult>> {
    crate::bounded::ensure_string_len(ctx.engine(), bytes.len().saturating_mul(2))?;
    Ok(::hex::encode(bytes))
}

// rhai_codegen unwraps the lock on a `&mut` first parameter in the code it generates.
#[allow(clippy::unwrap_used)]
#[export_module]
mod hex_ns {
    use super::*;

    /// Lower-case hex of the UTF-8 bytes of string `s`.
    #[rhai_fn(name = "encode", return_raw)]
    pub fn encode_str(ctx: NativeCallContext, s: &str) -> Result<String, Box<EvalAltResult>> {
        encode(&ctx, s.as_bytes())
    }

    /// Lower-case hex of Blob `b`.
    #[rhai_fn(name = "encode", pure, return_raw)]
    pub fn encode_blob(ctx: NativeCallContext, b: &mut Blob) -> Result<String, Box<EvalAltResult>> {
        encode(&ctx, b)
    }

    /// The bytes of hex text `s` (either case, even length), as a Blob.
    #[rhai_fn(return_raw)]
    pub fn decode(s: &str) -> Result<Blob, Box<EvalAltResult>> {
        ::hex::decode(s).map_err(|e| format!("hex: invalid input: {e}").into())
    }
}

pub(crate) fn module() -> Module {
    exported_module!(hex_ns)
}

#[cfg(test)]
mod tests {
    use rhai::Blob;

    use crate::stdlib::test_support::{eval, eval_err};

    #[test]
    fn encode_strings_and_blobs() {
        assert_eq!(eval::<String>(r#"hex::encode("hi!")"#), "686921");
        assert_eq!(eval::<String>(r#"hex::encode("")"#), "");
        assert_eq!(eval::<String>("hex::encode(blob(2, 0xAB))"), "abab");
        assert_eq!(eval::<String>("const B = blob(1, 1); hex::encode(B)"), "01");
    }

    #[test]
    fn decode_either_case() {
        assert_eq!(eval::<Blob>(r#"hex::decode("ABab00")"#), [0xab, 0xab, 0x00]);
        assert_eq!(
            eval::<String>(r#"hex::decode("686921").as_string()"#),
            "hi!"
        );
        assert!(eval::<Blob>(r#"hex::decode("")"#).is_empty());
        assert!(eval::<bool>(
            "let b = random::bytes(64); hex::decode(hex::encode(b)) == b"
        ));
    }

    #[test]
    fn decode_refuses_bad_input() {
        for bad in ["abc", "zz", "0x00", "ab cd", "é"] {
            let message = eval_err(&format!("hex::decode({bad:?})"));
            assert!(
                message.starts_with("hex: invalid input: "),
                "{bad}: {message}"
            );
        }
    }
}
