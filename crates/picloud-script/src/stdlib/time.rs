//! `time::*`: the clock, RFC 3339 and strftime. Everything is UTC: a timestamp given
//! as an RFC 3339 string with an offset is converted to UTC first.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, SecondsFormat, TimeDelta, Utc};
use rhai::plugin::*;
use rhai::{EvalAltResult, INT};

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: impl std::fmt::Display) -> Fallible<T> {
    Err(format!("time: {message}").into())
}

/// RFC 3339, UTC, milliseconds: `2026-01-02T03:04:05.678Z`.
fn rfc3339(at: DateTime<Utc>) -> Fallible<String> {
    // Outside years 0000–9999 chrono writes a sign and five digits: not RFC 3339.
    if !(0..=9999).contains(&at.year()) {
        return fail("result out of range (years 0000 to 9999)");
    }
    Ok(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn from_ms(ms: INT) -> Fallible<DateTime<Utc>> {
    match DateTime::from_timestamp_millis(ms) {
        Some(at) => Ok(at),
        None => fail(format!("timestamp {ms} out of range")),
    }
}

fn from_rfc3339(s: &str) -> Fallible<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(at) => Ok(at.with_timezone(&Utc)),
        Err(e) => fail(format!("not an RFC 3339 timestamp: {e}")),
    }
}

fn format_at(ctx: &NativeCallContext, at: DateTime<Utc>, fmt: &str) -> Fallible<String> {
    // Parsed up front: chrono's `Display` panics on an invalid format.
    let items: Vec<Item<'_>> = match StrftimeItems::new(fmt).parse() {
        Ok(items) => items,
        Err(_) => return fail(format!("invalid format {:?}", excerpt(fmt))),
    };
    // Some items parse but cannot be written (`%#z` is for parsing only): `write!`
    // reports that as an error where `to_string()` would panic. Written within the
    // string limit: a format of many `%c` items is a dozen times its own length.
    let max = crate::bounded::max_string(ctx.engine());
    let mut out = crate::bounded::CappedText::new(max.saturating_add(1));
    let written = write!(out, "{}", at.format_with_items(items.iter()));
    let (text, complete) = out.finish();
    if !complete {
        return Err(crate::bounded::string_too_large());
    }
    match written {
        Ok(()) => Ok(text),
        Err(_) => fail(format!("invalid format {:?}", excerpt(fmt))),
    }
}

/// At most the first 64 characters of `s`, for error messages.
fn excerpt(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(end, _)| &s[..end])
}

fn add_ms(at: DateTime<Utc>, ms: INT) -> Fallible<String> {
    match TimeDelta::try_milliseconds(ms).and_then(|d| at.checked_add_signed(d)) {
        Some(at) => rfc3339(at),
        None => fail("result out of range"),
    }
}

#[export_module]
mod time_ns {
    use super::*;

    /// The current time as an RFC 3339 UTC string with milliseconds.
    #[rhai_fn(return_raw)]
    pub fn now() -> Result<String, Box<EvalAltResult>> {
        rfc3339(Utc::now())
    }

    /// The current time in Unix milliseconds.
    pub fn now_ms() -> INT {
        Utc::now().timestamp_millis()
    }

    /// Unix milliseconds of an RFC 3339 string; throws on anything else.
    #[rhai_fn(return_raw)]
    pub fn parse(s: &str) -> Result<INT, Box<EvalAltResult>> {
        Ok(from_rfc3339(s)?.timestamp_millis())
    }

    /// Formats Unix milliseconds `ts` (in UTC) with strftime format `fmt` (`"%Y-%m-%d"`).
    #[rhai_fn(name = "format", return_raw)]
    pub fn format_ms(
        ctx: NativeCallContext,
        ts: INT,
        fmt: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        format_at(&ctx, from_ms(ts)?, fmt)
    }

    /// Formats RFC 3339 timestamp `ts` (converted to UTC) with strftime format `fmt`.
    #[rhai_fn(name = "format", return_raw)]
    pub fn format_rfc3339(
        ctx: NativeCallContext,
        ts: &str,
        fmt: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        format_at(&ctx, from_rfc3339(ts)?, fmt)
    }

    /// Unix milliseconds `ts` plus `ms` milliseconds, as an RFC 3339 UTC string.
    #[rhai_fn(name = "add", return_raw)]
    pub fn add_to_ms(ts: INT, ms: INT) -> Result<String, Box<EvalAltResult>> {
        add_ms(from_ms(ts)?, ms)
    }

    /// RFC 3339 timestamp `ts` plus `ms` milliseconds, as an RFC 3339 UTC string.
    #[rhai_fn(name = "add", return_raw)]
    pub fn add_to_rfc3339(ts: &str, ms: INT) -> Result<String, Box<EvalAltResult>> {
        add_ms(from_rfc3339(ts)?, ms)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(time_ns)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use rhai::INT;

    use crate::stdlib::test_support::{eval, eval_err};

    #[test]
    fn now_is_rfc3339_with_milliseconds() {
        let now = eval::<String>("time::now()");
        assert_eq!(now.len(), "2026-01-02T03:04:05.678Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
        let parsed = DateTime::parse_from_rfc3339(&now).expect("RFC 3339");
        let drift = (Utc::now().timestamp_millis() - parsed.timestamp_millis()).abs();
        assert!(drift < 60_000, "{drift}");
    }

    #[test]
    fn now_ms_is_the_clock() {
        let ms = eval::<INT>("time::now_ms()");
        assert!((Utc::now().timestamp_millis() - ms).abs() < 60_000);
    }

    #[test]
    fn parse_reads_rfc3339() {
        assert_eq!(
            eval::<INT>(r#"time::parse("2026-01-02T03:04:05.678Z")"#),
            1_767_323_045_678
        );
        assert_eq!(
            eval::<INT>(r#"time::parse("2026-01-02T05:04:05.678+02:00")"#),
            1_767_323_045_678
        );
        assert_eq!(eval::<INT>(r#"time::parse("1970-01-01T00:00:00Z")"#), 0);
    }

    #[test]
    fn parse_refuses_anything_else() {
        for bad in [
            "",
            "2026-01-02",
            "yesterday",
            "1767323045678",
            "2026-13-02T03:04:05Z",
        ] {
            let message = eval_err(&format!("time::parse({bad:?})"));
            assert!(message.starts_with("time: "), "{bad}: {message}");
        }
        let message = eval_err("time::parse(42)");
        assert!(message.contains("time::parse"), "{message}");
    }

    #[test]
    fn format_takes_ms_or_rfc3339() {
        assert_eq!(
            eval::<String>(r#"time::format(1767323045678, "%Y-%m-%d %H:%M:%S%.3f")"#),
            "2026-01-02 03:04:05.678"
        );
        assert_eq!(
            eval::<String>(r#"time::format("2026-01-02T05:04:05+02:00", "%d/%m/%Y %H:%M %z")"#),
            "02/01/2026 03:04 +0000"
        );
        assert_eq!(eval::<String>(r#"time::format(0, "")"#), "");
        assert_eq!(eval::<String>(r#"time::format(0, "%%")"#), "%");
    }

    #[test]
    fn format_refuses_bad_formats_without_panicking() {
        for fmt in ["%Q", "%", "abc %", "%-", "%.", "%:", "%#z", "%3"] {
            let message = eval_err(&format!("time::format(0, {fmt:?})"));
            assert!(
                message.starts_with("time: invalid format"),
                "{fmt}: {message}"
            );
        }
        let message = eval_err(r#"time::format("nope", "%Y")"#);
        assert!(
            message.starts_with("time: not an RFC 3339 timestamp"),
            "{message}"
        );
        let message = eval_err(r#"time::format(9223372036854775807, "%Y")"#);
        assert!(message.starts_with("time: timestamp"), "{message}");
    }

    #[test]
    fn add_returns_rfc3339() {
        assert_eq!(
            eval::<String>("time::add(0, 1500)"),
            "1970-01-01T00:00:01.500Z"
        );
        assert_eq!(
            eval::<String>(r#"time::add("2026-01-02T03:04:05.678Z", -86400000)"#),
            "2026-01-01T03:04:05.678Z"
        );
        assert_eq!(
            eval::<String>(r#"time::add("2026-01-02T05:04:05+02:00", 0)"#),
            "2026-01-02T03:04:05.000Z"
        );
    }

    #[test]
    fn add_refuses_overflow() {
        for script in [
            "time::add(0, 9223372036854775807)",
            "time::add(9223372036854775807, 1)",
            "time::add(0, -9223372036854775807 - 1)",
            r#"time::add("9999-12-31T23:59:59.999Z", 1)"#,
            r#"time::add("0000-01-01T00:00:00Z", -1)"#,
        ] {
            let message = eval_err(script);
            assert!(message.starts_with("time: "), "{script}: {message}");
        }
        assert_eq!(
            eval::<String>(r#"time::add("9999-12-31T23:59:59.998Z", 1)"#),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
