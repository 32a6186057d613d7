//! Matching request paths against route patterns.
//!
//! A segment trie per method. Matching walks it depth-first trying, at every segment,
//! the literal child, then the parameter child, then a wildcard: so the first match
//! found is the most specific one (literal beats `{param}` beats `{*rest}`, segment by
//! segment). The trie is a tree, so the walk visits every node at most once, whatever
//! the routes look like.

use std::collections::HashMap;

use crate::route_pattern::{RoutePattern, Segment};

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<String, usize>,
    param: Option<usize>,
    /// Route whose pattern ends here.
    terminal: Option<usize>,
    /// Route whose pattern ends here with `{*rest}`.
    wildcard: Option<usize>,
}

/// Routes of one method, by pattern.
#[derive(Debug)]
pub struct RouteTrie<T> {
    nodes: Vec<Node>,
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Default for RouteTrie<T> {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
            routes: Vec::new(),
        }
    }
}

/// A match: the route's value and its parameters, percent-decoded, by name.
#[derive(Debug)]
pub struct TrieMatch<'a, T> {
    pub pattern: &'a RoutePattern,
    pub value: &'a T,
    pub params: Vec<(String, String)>,
}

impl<T> RouteTrie<T> {
    /// Adds a route; `Err(value)` gives it back if a route of the same shape exists.
    pub fn insert(&mut self, pattern: RoutePattern, value: T) -> Result<(), T> {
        let mut node = 0;
        let segments = pattern.segments().to_vec();
        let index = self.routes.len();
        for segment in &segments {
            match segment {
                Segment::Literal(text) => {
                    node = match self.nodes[node].literals.get(text) {
                        Some(&next) => next,
                        None => {
                            let next = self.push_node();
                            self.nodes[node].literals.insert(text.clone(), next);
                            next
                        }
                    };
                }
                Segment::Param(_) => {
                    node = match self.nodes[node].param {
                        Some(next) => next,
                        None => {
                            let next = self.push_node();
                            self.nodes[node].param = Some(next);
                            next
                        }
                    };
                }
                Segment::Wildcard(_) => {
                    if self.nodes[node].wildcard.is_some() {
                        return Err(value);
                    }
                    self.nodes[node].wildcard = Some(index);
                    self.routes.push((pattern, value));
                    return Ok(());
                }
            }
        }
        if self.nodes[node].terminal.is_some() {
            return Err(value);
        }
        self.nodes[node].terminal = Some(index);
        self.routes.push((pattern, value));
        Ok(())
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// The most specific route matching `path` (raw, percent-encoded, starting with `/`).
    pub fn lookup(&self, path: &str) -> Option<TrieMatch<'_, T>> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let index = self.walk(0, &segments, 0)?;
        let (pattern, value) = &self.routes[index];
        let params = pattern
            .params()
            .map(|(position, name)| {
                let raw = match pattern.segments()[position] {
                    Segment::Wildcard(_) => segments[position..].join("/"),
                    _ => segments[position].to_owned(),
                };
                (name.to_owned(), decode(&raw))
            })
            .collect();
        Some(TrieMatch {
            pattern,
            value,
            params,
        })
    }

    fn walk(&self, node: usize, segments: &[&str], depth: usize) -> Option<usize> {
        let here = &self.nodes[node];
        let Some(segment) = segments.get(depth) else {
            return here.terminal;
        };
        if let Some(&next) = here.literals.get(*segment) {
            if let Some(found) = self.walk(next, segments, depth + 1) {
                return Some(found);
            }
        }
        if let Some(next) = here.param.filter(|_| !segment.is_empty()) {
            if let Some(found) = self.walk(next, segments, depth + 1) {
                return Some(found);
            }
        }
        here.wildcard
            .filter(|_| segments[depth..].iter().any(|s| !s.is_empty()))
    }
}

/// Path segments are percent-encoded; `+` is a literal plus in a path.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(paths: &[&str]) -> RouteTrie<String> {
        let mut t = RouteTrie::default();
        for p in paths {
            t.insert(RoutePattern::parse(p).expect("valid"), (*p).to_owned())
                .expect("no clash");
        }
        t
    }

    fn hit(t: &RouteTrie<String>, path: &str) -> Option<(String, Vec<(String, String)>)> {
        t.lookup(path).map(|m| (m.value.clone(), m.params))
    }

    #[test]
    fn literal_then_param_then_wildcard_with_backtracking() {
        let t = trie(&[
            "/users/me",
            "/users/{id}",
            "/users/{*rest}",
            "/users/me/posts/{p}",
            "/users/{id}/likes",
        ]);
        assert_eq!(
            hit(&t, "/users/me").map(|h| h.0).as_deref(),
            Some("/users/me")
        );
        let (route, params) = hit(&t, "/users/42").expect("match");
        assert_eq!(route, "/users/{id}");
        assert_eq!(params, vec![("id".into(), "42".into())]);
        // The literal branch dead-ends; the walk backtracks to the parameter.
        assert_eq!(
            hit(&t, "/users/me/likes").map(|h| h.0).as_deref(),
            Some("/users/{id}/likes")
        );
        let (route, params) = hit(&t, "/users/a/b%20c").expect("match");
        assert_eq!(route, "/users/{*rest}");
        assert_eq!(params, vec![("rest".into(), "a/b c".into())]);
        assert!(hit(&t, "/users").is_none());
        assert!(
            hit(&t, "/users/").is_none(),
            "an empty segment is no parameter"
        );
        assert!(hit(&t, "/other").is_none());
    }

    #[test]
    fn root_and_clashes() {
        let mut t = trie(&["/", "/{a}"]);
        assert_eq!(hit(&t, "/").map(|h| h.0).as_deref(), Some("/"));
        assert_eq!(hit(&t, "/x").map(|h| h.0).as_deref(), Some("/{a}"));
        let clash = t.insert(RoutePattern::parse("/{b}").expect("valid"), "again".into());
        assert_eq!(clash, Err("again".to_owned()));
    }

    #[test]
    fn decodes_params_but_keeps_plus() {
        let t = trie(&["/hello/{name}"]);
        assert_eq!(
            hit(&t, "/hello/a+b%2Fc%zz")
                .map(|h| h.1[0].1.clone())
                .as_deref(),
            Some("a+b/c%zz")
        );
    }
}
