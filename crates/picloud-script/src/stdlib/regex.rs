//! `regex::*`: matching and replacing with the `regex` crate's syntax (linear-time, no
//! look-around or back-references).
//!
//! Compiled patterns live in a small process-wide LRU so that a hot route does not
//! recompile its patterns on every run. Pattern size is bounded by the compiled-size
//! limits below; results are bounded by the engine's string and array limits *while*
//! they are built, so a tiny script cannot make the host allocate gigabytes.

use std::num::NonZeroUsize;
use std::sync::LazyLock;

use lru::LruCache;
use parking_lot::Mutex;
use regex::{Regex, RegexBuilder};
use rhai::plugin::*;
use rhai::{Array, EvalAltResult};

/// Compiled patterns kept (process-wide). With the size limits below, the cache holds
/// at most ~64 × (256 KiB + 256 KiB per script thread searching at once): memory no run
/// is charged for, so it stays small.
const CACHE_ENTRIES: usize = 64;
/// Patterns longer than this are compiled every time rather than cached, so the cache
/// itself stays small.
const MAX_CACHED_PATTERN_BYTES: usize = 4 * 1024;
/// Bound on a compiled program (`RegexBuilder::size_limit`). A search costs up to the
/// program's size times the text's length when the lazy DFA gives up (a pattern like
/// `a[0-9a-f]{3000}z` over random hex), and a native call cannot be stopped midway:
/// this, with texts held to the string limit, keeps one search to about a second.
const COMPILED_SIZE_LIMIT: usize = 256 << 10;
/// Bound on the lazy DFA's cache per regex and thread (`RegexBuilder::dfa_size_limit`).
const DFA_SIZE_LIMIT: usize = 256 << 10;
/// Result size bound used when the engine itself sets none (0 = unlimited in Rhai).
const FALLBACK_MAX_STRING: usize = 16 << 20;
/// Longest error text from the regex parser that is passed on (it quotes the pattern).
const MAX_ERROR_CHARS: usize = 512;

static CACHE: LazyLock<Mutex<LruCache<String, Regex>>> = LazyLock::new(|| {
    let capacity = NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
    Mutex::new(LruCache::new(capacity))
});

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: impl Into<String>) -> Fallible<T> {
    Err(format!("regex: {}", message.into()).into())
}

/// Refuses a text longer than the string limit (a host value, like a 10 MiB request
/// body, can be): the search could not be stopped at the run's deadline.
fn searchable(ctx: &NativeCallContext, text: &str) -> Fallible<()> {
    let max = max_string(ctx);
    if text.len() > max {
        return fail(format!(
            "text of {} bytes is longer than the string limit ({max} bytes); \
             search a part of it (sub_string)",
            text.len()
        ));
    }
    Ok(())
}

/// The compiled form of `pattern`, from the cache when possible.
fn compiled(pattern: &str) -> Fallible<Regex> {
    if let Some(regex) = CACHE.lock().get(pattern) {
        return Ok(regex.clone());
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(COMPILED_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .or_else(|e| match e {
            regex::Error::CompiledTooBig(_) => fail("pattern too large"),
            other => fail(format!(
                "invalid pattern: {}",
                truncate(&other.to_string(), MAX_ERROR_CHARS)
            )),
        })?;
    if pattern.len() <= MAX_CACHED_PATTERN_BYTES {
        CACHE.lock().put(pattern.to_owned(), regex.clone());
    }
    Ok(regex)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn max_string(ctx: &NativeCallContext) -> usize {
    match ctx.engine().max_string_size() {
        0 => FALLBACK_MAX_STRING,
        n => n,
    }
}

fn max_array(ctx: &NativeCallContext) -> usize {
    match ctx.engine().max_array_size() {
        0 => usize::MAX,
        n => n,
    }
}

/// One piece of a parsed replacement string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    /// A group by index; an index the pattern does not have expands to nothing.
    Group(usize),
}

/// Parses `replacement` exactly as `regex::Captures::expand` reads it: `$$` is a
/// literal `$`; `$name` takes the longest run of `[0-9A-Za-z_]`; `${name}` anything up
/// to `}`; an all-digit name is a group index; an unknown name expands to nothing; a
/// `$` starting no reference stays literal. Parsing it ourselves lets the expansion
/// stop at the size limit instead of after the damage is done.
fn parse_replacement<'a>(regex: &Regex, mut rest: &'a str) -> Vec<Piece<'a>> {
    fn push_literal<'a>(pieces: &mut Vec<Piece<'a>>, s: &'a str) {
        if !s.is_empty() {
            pieces.push(Piece::Literal(s));
        }
    }
    let mut pieces = Vec::new();
    while let Some(dollar) = rest.find('$') {
        push_literal(&mut pieces, &rest[..dollar]);
        rest = &rest[dollar..];
        let after = &rest[1..];
        if after.starts_with('$') {
            push_literal(&mut pieces, "$");
            rest = &rest[2..];
            continue;
        }
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(close) => (&braced[..close], 1 + 1 + close + 1),
                None => ("", 0),
            }
        } else {
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&after[..len], if len == 0 { 0 } else { 1 + len })
        };
        if consumed == 0 {
            push_literal(&mut pieces, "$");
            rest = after;
            continue;
        }
        rest = &rest[consumed..];
        let index = match name.parse::<usize>() {
            Ok(i) => Some(i),
            Err(_) => regex
                .capture_names()
                .position(|n| n.is_some_and(|n| n == name)),
        };
        if let Some(i) = index {
            pieces.push(Piece::Group(i));
        }
    }
    push_literal(&mut pieces, rest);
    pieces
}

/// Replaces the first `limit` matches (all when `None`), failing once the result would
/// exceed `max_len` bytes.
fn replace_n(
    regex: &Regex,
    text: &str,
    replacement: &str,
    limit: Option<usize>,
    max_len: usize,
) -> Fallible<String> {
    let pieces = parse_replacement(regex, replacement);
    let uses_groups = pieces.iter().any(|p| matches!(p, Piece::Group(_)));
    let mut out = String::new();
    let push = |out: &mut String, s: &str| -> Fallible<()> {
        if out.len().saturating_add(s.len()) > max_len {
            return fail(format!("result longer than {max_len} bytes"));
        }
        out.push_str(s);
        Ok(())
    };
    let mut last = 0;
    let max_matches = limit.unwrap_or(usize::MAX);
    if uses_groups {
        for caps in regex.captures_iter(text).take(max_matches) {
            let Some(whole) = caps.get(0) else { continue };
            push(&mut out, &text[last..whole.start()])?;
            for piece in &pieces {
                match piece {
                    Piece::Literal(s) => push(&mut out, s)?,
                    Piece::Group(i) => {
                        if let Some(m) = caps.get(*i) {
                            push(&mut out, m.as_str())?;
                        }
                    }
                }
            }
            last = whole.end();
        }
    } else {
        for whole in regex.find_iter(text).take(max_matches) {
            push(&mut out, &text[last..whole.start()])?;
            for piece in &pieces {
                if let Piece::Literal(s) = piece {
                    push(&mut out, s)?;
                }
            }
            last = whole.end();
        }
    }
    push(&mut out, &text[last..])?;
    Ok(out)
}

#[export_module]
mod regex_ns {
    use super::*;

    /// True when `pattern` matches anywhere in `text`.
    #[rhai_fn(return_raw)]
    pub fn is_match(
        ctx: NativeCallContext,
        pattern: &str,
        text: &str,
    ) -> Result<bool, Box<EvalAltResult>> {
        searchable(&ctx, text)?;
        Ok(compiled(pattern)?.is_match(text))
    }

    /// The first match of `pattern` in `text` as a string, or `()` when none.
    #[rhai_fn(return_raw)]
    pub fn find(
        ctx: NativeCallContext,
        pattern: &str,
        text: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        searchable(&ctx, text)?;
        Ok(compiled(pattern)?
            .find(text)
            .map_or(Dynamic::UNIT, |m| Dynamic::from(m.as_str().to_owned())))
    }

    /// Every non-overlapping match of `pattern` in `text`, as an array of strings.
    #[rhai_fn(return_raw)]
    pub fn find_all(
        ctx: NativeCallContext,
        pattern: &str,
        text: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        searchable(&ctx, text)?;
        let regex = compiled(pattern)?;
        let max = max_array(&ctx);
        let mut found = Array::new();
        for m in regex.find_iter(text) {
            if found.len() >= max {
                return fail(format!("more than {max} matches"));
            }
            found.push(Dynamic::from(m.as_str().to_owned()));
        }
        Ok(found)
    }

    /// `()`, or the first match as `[whole, group1, …]` (`()` for groups not taking part).
    #[rhai_fn(return_raw)]
    pub fn captures(
        ctx: NativeCallContext,
        pattern: &str,
        text: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        searchable(&ctx, text)?;
        let regex = compiled(pattern)?;
        let Some(caps) = regex.captures(text) else {
            return Ok(Dynamic::UNIT);
        };
        let groups: Array = caps
            .iter()
            .map(|g| g.map_or(Dynamic::UNIT, |m| Dynamic::from(m.as_str().to_owned())))
            .collect();
        Ok(groups.into())
    }

    /// `text` with its first match replaced (`$1`, `${name}` refer to groups, `$$` is `$`).
    #[rhai_fn(return_raw)]
    pub fn replace(
        ctx: NativeCallContext,
        pattern: &str,
        text: &str,
        replacement: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        searchable(&ctx, text)?;
        replace_n(
            &compiled(pattern)?,
            text,
            replacement,
            Some(1),
            max_string(&ctx),
        )
    }

    /// `text` with every match replaced (`$1`, `${name}` refer to groups, `$$` is `$`).
    #[rhai_fn(return_raw)]
    pub fn replace_all(
        ctx: NativeCallContext,
        pattern: &str,
        text: &str,
        replacement: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        searchable(&ctx, text)?;
        replace_n(
            &compiled(pattern)?,
            text,
            replacement,
            None,
            max_string(&ctx),
        )
    }
}

pub(crate) fn module() -> Module {
    exported_module!(regex_ns)
}

#[cfg(test)]
mod tests {
    use rhai::{Array, Dynamic};

    use super::*;
    use crate::stdlib::test_support::{eval, eval_err};

    #[test]
    fn is_match_and_find() {
        assert!(eval::<bool>(r#"regex::is_match("^a+b$", "aaab")"#));
        assert!(!eval::<bool>(r#"regex::is_match("^a+b$", "aaa")"#));
        assert_eq!(eval::<String>(r#"regex::find("\\d+", "ab 42 7")"#), "42");
        assert!(eval::<Dynamic>(r#"regex::find("\\d+", "none")"#).is_unit());
    }

    #[test]
    fn find_all_returns_every_match() {
        let found = eval::<Array>(r#"regex::find_all("[a-z]+", "ab 12 cd ef")"#);
        let found: Vec<String> = found.into_iter().map(|d| d.to_string()).collect();
        assert_eq!(found, ["ab", "cd", "ef"]);
        assert_eq!(eval::<i64>(r#"regex::find_all("x", "abc").len()"#), 0);
    }

    #[test]
    fn captures_with_optional_groups() {
        let caps = eval::<Array>(r#"regex::captures("(\\w+)@(\\w+)?(x)?", "joe@host")"#);
        assert_eq!(caps.len(), 4);
        assert_eq!(caps[0].to_string(), "joe@host");
        assert_eq!(caps[1].to_string(), "joe");
        assert_eq!(caps[2].to_string(), "host");
        assert!(caps[3].is_unit());
        assert!(eval::<Dynamic>(r#"regex::captures("(z)", "abc")"#).is_unit());
    }

    #[test]
    fn replace_with_group_references() {
        assert_eq!(
            eval::<String>(r#"regex::replace("(\\w+) (\\w+)", "hello world again", "$2 $1")"#),
            "world hello again"
        );
        assert_eq!(
            eval::<String>(
                r#"regex::replace_all("(?P<k>\\w+)=(?P<v>\\w+)", "a=1 b=2", "${v}=${k}")"#
            ),
            "1=a 2=b"
        );
        assert_eq!(
            eval::<String>(r#"regex::replace_all("o", "foo boo", "0")"#),
            "f00 b00"
        );
        assert_eq!(
            eval::<String>(r#"regex::replace("\\d", "a1b2", "$$")"#),
            "a$b2"
        );
    }

    #[test]
    fn replacement_parsing_agrees_with_the_regex_crate() {
        let regex = Regex::new(r"(?P<first>\w)(\w)?(?P<x_1>\d)?").expect("pattern");
        let cases = [
            "",
            "plain",
            "$",
            "$$",
            "$$1",
            "$0",
            "$1",
            "$2",
            "$3",
            "$4",
            "$99",
            "$1a",
            "${1}a",
            "${first}",
            "$first",
            "$first-$x_1",
            "${x_1}",
            "${",
            "${1",
            "${}",
            "$}",
            "$ ",
            "a$",
            "$-",
            "${☃}",
            "é$1é",
            "$184467440737095516160",
            "$${1}",
            "$$$1",
            "${first}${2}$0",
            "${+1}",
            "${ 1}",
        ];
        for text in ["ab1", "a", "", "xy zz9"] {
            for case in cases {
                let expected = regex.replace_all(text, case).into_owned();
                let ours = replace_n(&regex, text, case, None, usize::MAX).expect("replacement");
                assert_eq!(ours, expected, "replacement {case:?} on {text:?}");
                let expected = regex.replace(text, case).into_owned();
                let ours = replace_n(&regex, text, case, Some(1), usize::MAX).expect("replacement");
                assert_eq!(ours, expected, "replacement {case:?} on {text:?}");
            }
        }
    }

    #[test]
    fn invalid_pattern_throws() {
        let message = eval_err(r#"regex::is_match("(unclosed", "x")"#);
        assert!(message.starts_with("regex: invalid pattern: "), "{message}");
        let message = eval_err(r#"regex::find_all("a{2,1}", "x")"#);
        assert!(message.starts_with("regex: invalid pattern"), "{message}");
        // Deep nesting is refused by the parser's nest limit, not by the stack.
        let message = eval_err(
            r#"
            let open = "(";
            let close = ")";
            for i in 0..14 { open += open; close += close; }
            regex::is_match(open + "a" + close, "a")
            "#,
        );
        assert!(message.starts_with("regex: invalid pattern"), "{message}");
        assert!(message.chars().count() < 600, "error text is bounded");
    }

    #[test]
    fn huge_pattern_throws() {
        let message = eval_err(r#"regex::is_match("(\\w{100}){100}", "x")"#);
        assert_eq!(message, "regex: pattern too large");
        let message = eval_err(r#"regex::find("((a{100}){100}){100}", "x")"#);
        assert_eq!(message, "regex: pattern too large");
    }

    #[test]
    fn explosive_replacement_is_stopped() {
        // Each match would expand to 2^16 copies of a 1 KiB-ish string.
        let message = eval_err(
            r#"
            let text = "x";
            for i in 0..10 { text += text; }
            let rep = "$0";
            for i in 0..16 { rep += rep; }
            regex::replace("x+", text, rep)
            "#,
        );
        assert!(
            message.starts_with("regex: result longer than"),
            "{message}"
        );
        let message = eval_err(
            r#"
            let text = "aaaaaaaaaa";
            for i in 0..10 { text += text; }
            let rep = "b";
            for i in 0..10 { rep += rep; }
            regex::replace_all("", text, rep)
            "#,
        );
        assert!(
            message.starts_with("regex: result longer than"),
            "{message}"
        );
    }

    #[test]
    fn too_many_matches_throws() {
        let message = eval_err(
            r#"
            let text = "a";
            for i in 0..17 { text += text; }
            regex::find_all("a", text)
            "#,
        );
        assert!(message.starts_with("regex: more than"), "{message}");
    }

    #[test]
    fn patterns_are_cached() {
        let pattern = "^cached-[0-9]+-pattern$";
        assert!(compiled(pattern)
            .expect("compiles")
            .is_match("cached-12-pattern"));
        assert!(CACHE.lock().contains(pattern));
    }
}
