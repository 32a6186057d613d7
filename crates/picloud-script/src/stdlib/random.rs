//! `random::*`: numbers, UUIDs and bytes from the thread-local CSPRNG.

use rand::{Rng, RngCore};
use rhai::plugin::*;
use rhai::{Blob, EvalAltResult, FLOAT, INT};

/// Largest `random::bytes` request.
const MAX_BYTES: usize = 1 << 20;

/// The largest Blob `random::bytes` makes: 1 MiB, or less if the engine's Blob
/// (array) size limit is lower, so that the refusal carries our prefix.
fn max_bytes(engine: &rhai::Engine) -> usize {
    match engine.max_array_size() {
        0 => MAX_BYTES,
        limit => limit.min(MAX_BYTES),
    }
}

#[export_module]
mod random_ns {
    use super::*;

    /// A uniformly random integer between `lo` and `hi`, both included.
    #[rhai_fn(return_raw)]
    pub fn int(lo: INT, hi: INT) -> Result<INT, Box<EvalAltResult>> {
        if lo > hi {
            return Err(format!("random: lo ({lo}) is greater than hi ({hi})").into());
        }
        Ok(rand::thread_rng().gen_range(lo..=hi))
    }

    /// A uniformly random float in [0, 1).
    pub fn float() -> FLOAT {
        rand::thread_rng().gen::<FLOAT>()
    }

    /// A random (version 4) UUID as a lower-case hyphenated string.
    pub fn uuid() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// A Blob of `n` random bytes (0 to 1 MiB).
    #[rhai_fn(return_raw)]
    pub fn bytes(ctx: NativeCallContext, n: INT) -> Result<Blob, Box<EvalAltResult>> {
        let max = max_bytes(ctx.engine());
        let len = match usize::try_from(n) {
            Ok(len) if len <= max => len,
            _ => {
                return Err(format!("random: bytes: n must be between 0 and {max}, got {n}").into())
            }
        };
        let mut blob = vec![0u8; len];
        rand::thread_rng().fill_bytes(&mut blob);
        Ok(blob)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(random_ns)
}

#[cfg(test)]
mod tests {
    use rhai::{Blob, FLOAT, INT};

    use crate::stdlib::test_support::{engine, eval, eval_err};

    #[test]
    fn int_is_inclusive_and_in_range() {
        for _ in 0..200 {
            let n = eval::<INT>("random::int(-2, 2)");
            assert!((-2..=2).contains(&n), "{n}");
        }
        assert_eq!(eval::<INT>("random::int(7, 7)"), 7);
        // The full range does not overflow.
        eval::<INT>("random::int(-9223372036854775807 - 1, 9223372036854775807)");
        let seen: std::collections::HashSet<INT> =
            (0..200).map(|_| eval::<INT>("random::int(0, 1)")).collect();
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn int_refuses_an_empty_range() {
        assert_eq!(
            eval_err("random::int(5, 1)"),
            "random: lo (5) is greater than hi (1)"
        );
    }

    #[test]
    fn float_is_in_unit_interval() {
        for _ in 0..200 {
            let x = eval::<FLOAT>("random::float()");
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn uuid_is_v4() {
        let id = eval::<String>("random::uuid()");
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id, id.to_lowercase());
        assert_ne!(id, eval::<String>("random::uuid()"));
    }

    #[test]
    fn bytes_has_the_requested_length() {
        assert_eq!(eval::<Blob>("random::bytes(16)").len(), 16);
        assert!(eval::<Blob>("random::bytes(0)").is_empty());
        assert_ne!(
            eval::<Blob>("random::bytes(32)"),
            eval::<Blob>("random::bytes(32)")
        );
    }

    #[test]
    fn bytes_up_to_the_limit() {
        let max = super::max_bytes(engine());
        assert!(max <= 1 << 20);
        assert_eq!(eval::<Blob>(&format!("random::bytes({max})")).len(), max);
        let message = eval_err(&format!("random::bytes({})", max + 1));
        assert!(
            message.starts_with("random: bytes: n must be between 0 and"),
            "{message}"
        );
    }

    #[test]
    fn bytes_refuses_bad_lengths() {
        for n in [
            "-1",
            "1048577",
            "-9223372036854775807",
            "9223372036854775807",
        ] {
            let message = eval_err(&format!("random::bytes({n})"));
            assert!(
                message.starts_with("random: bytes: n must be between 0 and"),
                "{message}"
            );
        }
    }
}
