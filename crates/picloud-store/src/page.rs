//! Keyset pagination. Ids sort by creation time, so "the rows after this id" is a
//! stable page boundary; the cursor is that id, opaque to clients.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::{Stream, TryStreamExt as _};

use crate::StoreResult;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Most bytes of stored values (documents, KV values, dead-letter events) one read
/// hands back. A page stops early at it, with a cursor, so every row stays reachable;
/// `docs_find`, which has no cursor, refuses instead. Without it one call read 500 KV
/// values of 1 MiB, or 1,000 documents of 1 MB, into memory before anything could
/// count them against a run's memory limit.
pub const MAX_READ_BYTES: usize = 16 << 20;

/// Rows read under [`MAX_READ_BYTES`], in listing order. A backend streams its rows
/// and asks [`Gathered::admit`] before it decodes each one.
#[derive(Debug)]
pub struct Gathered<T> {
    pub items: Vec<T>,
    bytes: usize,
    budget: usize,
    /// Rows were left unread because the budget was spent.
    pub cut: bool,
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Self::within(MAX_READ_BYTES)
    }
}

impl<T> Gathered<T> {
    pub fn within(budget: usize) -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
            budget,
            cut: false,
        }
    }

    /// Reads `rows` in order until the budget is spent, measuring each row's stored
    /// size with `size` before `decode` turns it into an item; the rest of the stream
    /// is left unread.
    pub async fn read<R, S>(
        rows: S,
        size: impl Fn(&R) -> usize,
        decode: impl Fn(&R) -> StoreResult<T>,
    ) -> StoreResult<Self>
    where
        S: Stream<Item = StoreResult<R>>,
    {
        let mut rows = std::pin::pin!(rows);
        let mut gathered = Self::default();
        while let Some(row) = rows.try_next().await? {
            if !gathered.admit(size(&row)) {
                break;
            }
            gathered.items.push(decode(&row)?);
        }
        Ok(gathered)
    }

    /// Whether a row of `bytes` stored bytes still fits. The first row always does, so
    /// one value at its own size limit can always be read.
    pub fn admit(&mut self, bytes: usize) -> bool {
        let total = self.bytes.saturating_add(bytes);
        if total > self.budget && !self.items.is_empty() {
            self.cut = true;
            return false;
        }
        self.bytes = total;
        true
    }
}

/// A position in a listing, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub fn after(id: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(format!("v1:{id}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The position (an id, or a KV key) a client's cursor points after; `None` if it
    /// is not one of ours. Positions are only ever bound as query parameters.
    pub fn decode(raw: &str) -> Option<String> {
        if raw.len() > 2048 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let position = text.strip_prefix("v1:")?;
        (!position.is_empty()).then(|| position.to_owned())
    }
}

/// Which page to read: at most `limit` rows after the row `after` (an id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// Why a client's page request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("limit must be 1 to {MAX_LIMIT}")]
    InvalidLimit,
}

impl PageRequest {
    /// A client's request, as every listing (admin API, script SDK) reads it: the
    /// `cursor` a previous page handed out (none: the first page) and a
    /// `limit` from 1 to [`MAX_LIMIT`] ([`DEFAULT_LIMIT`] when absent).
    pub fn parse(cursor: Option<&str>, limit: Option<u32>) -> Result<Self, PageError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(PageError::InvalidLimit);
        }
        let after = match cursor {
            None => None,
            Some(raw) => Some(Cursor::decode(raw).ok_or(PageError::InvalidCursor)?),
        };
        Ok(Self { limit, after })
    }

    pub fn first(limit: u32) -> Self {
        Self {
            limit: limit.clamp(1, MAX_LIMIT),
            after: None,
        }
    }

    /// The number of rows a backend should fetch: one more than the page, to learn
    /// whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from `fetch_limit()` rows in listing order.
    pub fn from_rows(mut rows: Vec<T>, req: &PageRequest, id_of: impl Fn(&T) -> &str) -> Self {
        let limit = req.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::after(id_of(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// Builds a page from rows read under a byte budget: when the budget cut the read
    /// short, the page ends early and its cursor continues after its last row.
    pub fn from_gathered(
        gathered: Gathered<T>,
        req: &PageRequest,
        id_of: impl Fn(&T) -> &str,
    ) -> Self {
        let cut = gathered.cut;
        let mut page = Self::from_rows(gathered.items, req, &id_of);
        if cut && page.next_cursor.is_none() {
            page.next_cursor = page.items.last().map(|last| Cursor::after(id_of(last)));
        }
        page
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor::after("app_123");
        assert_eq!(Cursor::decode(c.as_str()).as_deref(), Some("app_123"));
        assert_eq!(Cursor::decode("app_123"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v2:app_1")), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), None);
        // KV keys are positions too: any text, only ever bound as a parameter.
        let key = "a key/with ' quotes";
        assert_eq!(
            Cursor::decode(Cursor::after(key).as_str()).as_deref(),
            Some(key)
        );
    }

    #[test]
    fn pages_know_when_more_follow() {
        let req = PageRequest::first(2);
        let page = Page::from_rows(vec!["a", "b", "c"], &req, |s| s);
        assert_eq!(page.items, vec!["a", "b"]);
        assert_eq!(page.next_cursor, Some(Cursor::after("b")));
        let page = Page::from_rows(vec!["a", "b"], &req, |s| s);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn a_spent_budget_ends_the_page_early_with_a_cursor() {
        let mut g = Gathered::within(10);
        for (item, bytes) in [("a", 4), ("b", 4), ("c", 4)] {
            if !g.admit(bytes) {
                break;
            }
            g.items.push(item);
        }
        assert_eq!(g.items, vec!["a", "b"]);
        let page = Page::from_gathered(g, &PageRequest::first(50), |s| s);
        assert_eq!(page.items, vec!["a", "b"]);
        assert_eq!(page.next_cursor, Some(Cursor::after("b")));

        // One row over the whole budget is still read: it is alone on its page.
        let mut g = Gathered::within(10);
        assert!(g.admit(100));
        g.items.push("big");
        assert!(!g.admit(1));
        assert!(g.cut);
    }
}
