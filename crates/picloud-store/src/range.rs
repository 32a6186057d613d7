//! Key ranges, the same for every backend: both compare keys in code-point order
//! (SQLite's BINARY collation on UTF-8; PostgreSQL `COLLATE "C"`), so a prefix scan
//! is `key >= prefix AND key < prefix_end(prefix)` on either.

/// The smallest string greater than every string starting with `prefix`, if any.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        // Surrogates are not characters: the next one after U+D7FF is U+E000.
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("alice").as_deref(), Some("alicf"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
