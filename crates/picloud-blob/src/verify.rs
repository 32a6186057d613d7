//! Counting and hashing in the one pass over the bytes: the size cap and digest of a
//! write, the check of a read.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::{BlobError, BlobKey, ByteStream, Expected, Written};

/// The running size and digest of a body being written.
pub(crate) struct Meter {
    max: u64,
    size: u64,
    hasher: Sha256,
}

impl Meter {
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            size: 0,
            hasher: Sha256::new(),
        }
    }

    /// Counts `chunk` in, refusing it when it takes the body past the cap: the caller
    /// stops before writing a byte of it.
    pub(crate) fn take(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let size = self.size.saturating_add(chunk.len() as u64);
        if size > self.max {
            return Err(BlobError::TooLarge { limit: self.max });
        }
        self.size = size;
        self.hasher.update(chunk);
        Ok(())
    }

    pub(crate) fn finish(self) -> Written {
        Written {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

/// A read stream that checks the bytes against what was recorded. It holds each
/// chunk back until the next one arrives, and the last until the digest matched: a
/// consumer that stops at the first error (an HTTP body of known length) never gets
/// the whole of a corrupted blob, so a download of one can never complete.
struct Verified {
    inner: ByteStream,
    key: BlobKey,
    expect: Expected,
    seen: u64,
    hasher: Option<Sha256>,
    held: Option<Bytes>,
}

/// Wraps a store's raw read stream in the size and digest check.
pub(crate) fn verified(inner: ByteStream, key: &BlobKey, expect: &Expected) -> ByteStream {
    Box::pin(Verified {
        inner,
        key: key.clone(),
        expect: expect.clone(),
        seen: 0,
        hasher: Some(Sha256::new()),
        held: None,
    })
}

/// A mismatch, logged in the one place: the key is what an operator needs to find the
/// bytes, which are kept for that.
pub(crate) fn corrupted(key: &BlobKey, expect: &Expected, read: u64, why: &str) -> BlobError {
    tracing::error!(
        key = %key,
        expected_size = expect.size,
        read_size = read,
        "blob corrupted: {why}"
    );
    BlobError::Corrupted {
        key: key.to_string(),
    }
}

/// Checks a whole blob read at once (size first, then digest).
pub(crate) fn check_whole(key: &BlobKey, expect: &Expected, bytes: &[u8]) -> Result<(), BlobError> {
    let read = bytes.len() as u64;
    if read != expect.size {
        return Err(corrupted(
            key,
            expect,
            read,
            "size differs from the recorded one",
        ));
    }
    let digest = hex::encode(Sha256::digest(bytes));
    if !digest.eq_ignore_ascii_case(&expect.sha256) {
        return Err(corrupted(key, expect, read, "SHA-256 differs"));
    }
    Ok(())
}

impl Verified {
    fn corrupted(&mut self, why: &str) -> std::io::Error {
        self.hasher = None;
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            corrupted(&self.key, &self.expect, self.seen, why),
        )
    }
}

impl Stream for Verified {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(hasher) = this.hasher.as_mut() else {
                // Verified (or failed): what is still held goes out, then the end.
                return Poll::Ready(this.held.take().map(Ok));
            };
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.seen = this.seen.saturating_add(chunk.len() as u64);
                    if this.seen > this.expect.size {
                        this.held = None;
                        return Poll::Ready(Some(Err(this.corrupted("longer than recorded"))));
                    }
                    hasher.update(&chunk);
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // A storage failure ends the stream; it says nothing of the bytes.
                    this.hasher = None;
                    this.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    let Some(hasher) = this.hasher.take() else {
                        continue;
                    };
                    if this.seen != this.expect.size {
                        this.held = None;
                        return Poll::Ready(Some(Err(this.corrupted("shorter than recorded"))));
                    }
                    let digest = hex::encode(hasher.finalize());
                    if !digest.eq_ignore_ascii_case(&this.expect.sha256) {
                        this.held = None;
                        return Poll::Ready(Some(Err(this.corrupted("SHA-256 differs"))));
                    }
                    // Loops once more: the held chunk, then the end.
                }
            }
        }
    }
}

/// A verified stream read whole; `size` is what it should hold (capacity up front).
pub(crate) async fn collect(mut stream: ByteStream, size: u64) -> Result<Bytes, BlobError> {
    let mut out = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(BlobError::from_stream)?);
    }
    Ok(out.freeze())
}
