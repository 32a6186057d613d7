//! Blob keys: `{app_id}/{shard}/{random}`, always generated, never built from anything a
//! user named, so a key can be turned into a path or an object name without escaping.

use std::fmt;

use rand::RngCore;

use crate::BlobError;

/// Longest app segment accepted by [`BlobKey::parse`] (app ids are 30 characters).
const MAX_APP_LEN: usize = 64;
const RANDOM_LEN: usize = 32;

/// The name of one blob. The shard (the random part's first byte) keeps any one
/// directory to 1/256 of an app's files.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// A fresh key for a blob of `app`: 128 random bits, so never one in use.
    pub fn generate(app: &picloud_core::AppId) -> Self {
        let mut random = [0u8; RANDOM_LEN / 2];
        rand::thread_rng().fill_bytes(&mut random);
        let random = hex::encode(random);
        Self(format!("{}/{}/{random}", app.as_str(), &random[..2]))
    }

    /// A key read back from a metadata row or a listing. Only the generated shape is
    /// accepted (no `..`, no other slashes, no characters outside `[A-Za-z0-9_]` in
    /// the app segment, lower-case hex elsewhere), whatever the source.
    pub fn parse(s: &str) -> Result<Self, BlobError> {
        let mut parts = s.split('/');
        let (Some(app), Some(shard), Some(random), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BlobError::InvalidKey);
        };
        let lower_hex = |p: &str| p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let valid = !app.is_empty()
            && app.len() <= MAX_APP_LEN
            && app.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && shard.len() == 2
            && lower_hex(shard)
            && random.len() == RANDOM_LEN
            && lower_hex(random)
            && random.starts_with(shard);
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(BlobError::InvalidKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The app segment.
    pub fn app(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    /// The three segments, for building a path.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobKey({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let app = picloud_core::AppId::new();
        let a = BlobKey::generate(&app);
        let b = BlobKey::generate(&app);
        assert_ne!(a, b);
        assert_eq!(BlobKey::parse(a.as_str()).expect("valid"), a);
        assert_eq!(a.app(), app.as_str());
        assert_eq!(a.segments().count(), 3);
    }

    #[test]
    fn anything_but_the_generated_shape_is_refused() {
        let good = BlobKey::generate(&picloud_core::AppId::new());
        let rand = good
            .as_str()
            .rsplit('/')
            .next()
            .expect("segment")
            .to_owned();
        let shard = &rand[..2];
        for bad in [
            String::new(),
            "../x".to_owned(),
            "/etc/passwd".to_owned(),
            format!("../{shard}/{rand}"),
            format!("app_x/../{rand}"),
            format!("app_x/{shard}/.."),
            format!("/app_x/{shard}/{rand}"),
            format!("app_x/{shard}/{rand}/"),
            format!("app_x/{shard}/{rand}/x"),
            format!("app_x//{rand}"),
            format!("app-x/{shard}/{rand}"),
            format!("app.x/{shard}/{rand}"),
            format!("app_x/{shard}/{}", rand.to_uppercase()),
            format!("app_x/{shard}/{rand}.tmp.1234"),
            format!("app_x/zz/{rand}"),
            format!("app_x/{shard}/{}", &rand[..31]),
            format!("app_x\\{shard}\\{rand}"),
            format!("{}/{shard}/{rand}", "a".repeat(65)),
        ] {
            assert!(BlobKey::parse(&bad).is_err(), "{bad:?} accepted");
        }
        assert!(BlobKey::parse(&format!("app_x/{shard}/{rand}")).is_ok());
    }
}
