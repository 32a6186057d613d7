//! Route path patterns: `/users/{id}`, `/files/{*rest}`.
//!
//! A pattern is a list of whole segments, each a literal, a `{param}` or, last only, a
//! `{*wildcard}`. Two patterns with the same shape clash even if their parameter names
//! differ, so the router is fed a *normalised* form with positional names and each
//! route keeps its own names for the values it extracts.

use std::cmp::Ordering;

const MAX_PATTERN_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
    Wildcard(String),
}

/// Why a path pattern was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    segments: Vec<Segment>,
}

fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

fn valid_literal(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@%".contains(c))
}

/// `.` and `..`, also spelled with `%2e` (the URL standard resolves those too).
fn is_dot_segment(text: &str) -> bool {
    let decoded = text.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

impl RoutePattern {
    pub fn parse(path: &str) -> Result<Self, PatternError> {
        let err = |m: String| Err(PatternError(m));
        if path.len() > MAX_PATTERN_LEN {
            return err(format!("path is longer than {MAX_PATTERN_LEN} bytes"));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return err("path must start with '/'".into());
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            let last = parts.len() - 1;
            for (i, part) in parts.iter().enumerate() {
                if part.is_empty() {
                    return err("path has an empty segment ('//' or a trailing '/')".into());
                }
                let segment = if let Some(inner) =
                    part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
                {
                    if let Some(name) = inner.strip_prefix('*') {
                        if i != last {
                            return err(format!("wildcard {{*{name}}} must be the last segment"));
                        }
                        if !valid_param_name(name) {
                            return err(format!("invalid wildcard name {name:?}"));
                        }
                        Segment::Wildcard(name.to_owned())
                    } else {
                        if !valid_param_name(inner) {
                            return err(format!("invalid parameter name {inner:?}"));
                        }
                        Segment::Param(inner.to_owned())
                    }
                } else if valid_literal(part) {
                    Segment::Literal((*part).to_owned())
                } else {
                    return err(format!(
                        "segment {part:?} must be a literal, {{name}} or {{*name}} (a parameter takes the whole segment)"
                    ));
                };
                segments.push(segment);
            }
        }
        let mut names: Vec<&str> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) | Segment::Wildcard(n) => Some(n.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return err(format!("parameter {:?} appears twice", w[0]));
        }
        Ok(Self { segments })
    }

    /// [`RoutePattern::parse`], plus the rules for a route being created: no `.` or
    /// `..` segment (clients resolve them away before sending, so such a route is
    /// never reached as written, or reached by a path that means something else),
    /// and no `:name` segment (another router's parameter syntax, which here would be
    /// a literal). Routes stored before these rules keep loading through `parse`.
    pub fn parse_new(path: &str) -> Result<Self, PatternError> {
        let pattern = Self::parse(path)?;
        for segment in &pattern.segments {
            let Segment::Literal(text) = segment else {
                continue;
            };
            if is_dot_segment(text) {
                return Err(PatternError(format!(
                    "segment {text:?} is a relative path step: '.' and '..' segments are \
                     resolved by clients before a request is sent, so they cannot be part \
                     of a route"
                )));
            }
            if let Some(name) = text.strip_prefix(':') {
                let name = if valid_param_name(name) { name } else { "name" };
                return Err(PatternError(format!(
                    "segment {text:?} looks like a parameter: write it as {{{name}}}"
                )));
            }
        }
        Ok(pattern)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The pattern with positional parameter names, the form routes are keyed by.
    pub fn normalized(&self) -> String {
        if self.segments.is_empty() {
            return "/".into();
        }
        let mut out = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Param(_) => out.push_str(&format!("{{p{i}}}")),
                Segment::Wildcard(_) => out.push_str(&format!("{{*p{i}}}")),
            }
        }
        out
    }

    /// Parameter names in the order `normalized()` numbers them, with their positions.
    pub fn params(&self) -> impl Iterator<Item = (usize, &str)> {
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Segment::Param(n) | Segment::Wildcard(n) => Some((i, n.as_str())),
                Segment::Literal(_) => None,
            })
    }

    /// Orders patterns by how specific they are, most specific first: segment by
    /// segment a literal beats a parameter, which beats a wildcard.
    pub fn cmp_specificity(&self, other: &Self) -> Ordering {
        fn rank(s: &Segment) -> u8 {
            match s {
                Segment::Literal(_) => 0,
                Segment::Param(_) => 1,
                Segment::Wildcard(_) => 2,
            }
        }
        self.segments
            .iter()
            .map(rank)
            .cmp(other.segments.iter().map(rank))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p = RoutePattern::parse("/users/{id}/files/{*rest}").expect("valid");
        assert_eq!(p.normalized(), "/users/{p1}/files/{*p3}");
        assert_eq!(p.params().collect::<Vec<_>>(), vec![(1, "id"), (3, "rest")]);
        assert_eq!(
            RoutePattern::parse("/").map(|p| p.normalized()),
            Ok("/".into())
        );
    }

    #[test]
    fn refuses_bad_patterns() {
        for bad in [
            "users",
            "/users/",
            "//x",
            "/{*rest}/x",
            "/{a}/{a}",
            "/pre{id}",
            "/{1x}",
            "/a b",
            "/{}",
        ] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn literal_beats_param_beats_wildcard() {
        let lit = RoutePattern::parse("/users/me").expect("valid");
        let param = RoutePattern::parse("/users/{id}").expect("valid");
        let wild = RoutePattern::parse("/users/{*rest}").expect("valid");
        assert_eq!(lit.cmp_specificity(&param), Ordering::Less);
        assert_eq!(param.cmp_specificity(&wild), Ordering::Less);
    }

    #[test]
    fn new_routes_refuse_dot_segments_and_colon_parameters() {
        for (bad, hint) in [
            ("/a/../b", "'..'"),
            ("/.", "'.'"),
            ("/users/:id", "{id}"),
            ("/x/:1", "{name}"),
        ] {
            let e = RoutePattern::parse_new(bad).expect_err(bad).to_string();
            assert!(e.contains(hint), "{bad}: {e}");
            // Stored routes written before the rule still load.
            assert!(RoutePattern::parse(bad).is_ok(), "{bad}");
        }
        for bad in ["/%2e%2e/x", "/a/%2E", "/a/.%2e"] {
            let e = RoutePattern::parse_new(bad).expect_err(bad).to_string();
            assert!(e.contains("relative path step"), "{bad}: {e}");
        }
        for good in [
            "/v1.2",
            "/a..b",
            "/.well-known/x",
            "/a:b",
            "/{id}",
            "/%2e%2ex",
        ] {
            assert!(RoutePattern::parse_new(good).is_ok(), "{good}");
        }
    }
}
