//! `base64::*`: standard (padded) and URL-safe (unpadded) Base64. Decoding accepts
//! input with or without padding in both alphabets and returns a Blob.

use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use rhai::plugin::*;
use rhai::{Blob, EvalAltResult};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_DECODE: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_DECODE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// `bytes` as Base64, refused before it is written when the text would pass the
/// string limit (a 16 MiB Blob would be 21 MiB of text).
fn encode_with(
    ctx: &NativeCallContext,
    engine: &GeneralPurpose,
    bytes: &[u8],
    padded: bool,
) -> Result<String, Box<EvalAltResult>> {
    let len = base64::encoded_len(bytes.len(), padded).unwrap_or(usize::MAX);
    crate::bounded::ensure_string_len(ctx.engine(), len)?;
    Ok(engine.encode(bytes))
}

fn decode_with(engine: &GeneralPurpose, text: &str) -> Result<Blob, Box<EvalAltResult>> {
    engine
        .decode(text)
        .map_err(|e| format!("base64: invalid input: {e}").into())
}

// rhai_codegen unwraps the lock on a `&mut` first parameter in the code it generates.
#[allow(clippy::unwrap_used)]
#[export_module]
mod base64_ns {
    use super::*;

    /// Standard padded Base64 of the UTF-8 bytes of string `s`.
    #[rhai_fn(name = "encode", return_raw)]
    pub fn encode_str(ctx: NativeCallContext, s: &str) -> Result<String, Box<EvalAltResult>> {
        encode_with(&ctx, &STANDARD, s.as_bytes(), true)
    }

    /// Standard padded Base64 of Blob `b`.
    #[rhai_fn(name = "encode", pure, return_raw)]
    pub fn encode_blob(ctx: NativeCallContext, b: &mut Blob) -> Result<String, Box<EvalAltResult>> {
        encode_with(&ctx, &STANDARD, b, true)
    }

    /// URL-safe unpadded Base64 of the UTF-8 bytes of string `s`.
    #[rhai_fn(name = "encode_url", return_raw)]
    pub fn encode_url_str(ctx: NativeCallContext, s: &str) -> Result<String, Box<EvalAltResult>> {
        encode_with(&ctx, &URL_SAFE_NO_PAD, s.as_bytes(), false)
    }

    /// URL-safe unpadded Base64 of Blob `b`.
    #[rhai_fn(name = "encode_url", pure, return_raw)]
    pub fn encode_url_blob(
        ctx: NativeCallContext,
        b: &mut Blob,
    ) -> Result<String, Box<EvalAltResult>> {
        encode_with(&ctx, &URL_SAFE_NO_PAD, b, false)
    }

    /// The bytes of standard Base64 text `s` (padding optional), as a Blob.
    #[rhai_fn(return_raw)]
    pub fn decode(s: &str) -> Result<Blob, Box<EvalAltResult>> {
        decode_with(&STANDARD_DECODE, s)
    }

    /// The bytes of URL-safe Base64 text `s` (padding optional), as a Blob.
    #[rhai_fn(return_raw)]
    pub fn decode_url(s: &str) -> Result<Blob, Box<EvalAltResult>> {
        decode_with(&URL_SAFE_DECODE, s)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(base64_ns)
}

#[cfg(test)]
mod tests {
    use rhai::Blob;

    use crate::stdlib::test_support::{eval, eval_err};

    #[test]
    fn encode_strings_and_blobs() {
        assert_eq!(eval::<String>(r#"base64::encode("hello?")"#), "aGVsbG8/");
        assert_eq!(eval::<String>(r#"base64::encode("hi")"#), "aGk=");
        assert_eq!(eval::<String>(r#"base64::encode("")"#), "");
        assert_eq!(eval::<String>("base64::encode(blob(2, 0xfb))"), "+/s=");
        assert_eq!(
            eval::<String>("const B = blob(1, 0); base64::encode(B)"),
            "AA=="
        );
    }

    #[test]
    fn encode_url_is_url_safe_and_unpadded() {
        assert_eq!(
            eval::<String>(r#"base64::encode_url("hello?")"#),
            "aGVsbG8_"
        );
        assert_eq!(eval::<String>(r#"base64::encode_url("hi")"#), "aGk");
        assert_eq!(eval::<String>("base64::encode_url(blob(2, 0xfb))"), "-_s");
    }

    #[test]
    fn decode_round_trips() {
        assert_eq!(eval::<Blob>(r#"base64::decode("aGk=")"#), b"hi");
        assert_eq!(eval::<Blob>(r#"base64::decode("aGk")"#), b"hi");
        assert_eq!(
            eval::<String>(r#"base64::decode("aGVsbG8/").as_string()"#),
            "hello?"
        );
        assert_eq!(eval::<Blob>(r#"base64::decode_url("-_s")"#), [0xfb, 0xfb]);
        assert_eq!(eval::<Blob>(r#"base64::decode_url("-_s=")"#), [0xfb, 0xfb]);
        assert!(eval::<Blob>(r#"base64::decode("")"#).is_empty());
        assert!(eval::<bool>(
            "let b = random::bytes(100); base64::decode_url(base64::encode_url(b)) == b"
        ));
        assert!(eval::<bool>(
            "let b = random::bytes(100); base64::decode(base64::encode(b)) == b"
        ));
        assert_eq!(eval::<Blob>(r#"base64::decode("+/s")"#), [0xfb, 0xfb]);
    }

    #[test]
    fn decode_refuses_bad_input() {
        for bad in ["a", "a===", "@@@@", "aGk=aGk=", "-_s=", "aGk =", "aGl="] {
            let message = eval_err(&format!("base64::decode({bad:?})"));
            assert!(
                message.starts_with("base64: invalid input"),
                "{bad}: {message}"
            );
        }
        for bad in ["+/s", "a", "aGk=="] {
            let message = eval_err(&format!("base64::decode_url({bad:?})"));
            assert!(
                message.starts_with("base64: invalid input"),
                "{bad}: {message}"
            );
        }
    }
}
