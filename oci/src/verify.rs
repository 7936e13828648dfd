//! Checking content against its descriptor while it streams, without I/O of its own: the
//! caller feeds the bytes as they pass (from an async stream, a file, a socket), the
//! [`Verifier`] refuses them as soon as they pass the declared size, and at the end checks
//! the size and the digest. Untrusted bytes are never committed unchecked.

use crate::digest::{Digest, Hasher};

/// Why streamed content is not what its descriptor says. The messages name the blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// More bytes than the declared size (refused before they are hashed).
    #[error("{digest}: more than the declared {size} bytes")]
    TooLong {
        /// The blob.
        digest: Digest,
        /// Declared size.
        size: u64,
    },
    /// The content ended before the declared size.
    #[error("{digest}: got {seen} bytes, expected {size}")]
    TooShort {
        /// The blob.
        digest: Digest,
        /// Bytes seen.
        seen: u64,
        /// Declared size.
        size: u64,
    },
    /// The bytes hash to something else.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// Declared digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
}

/// Hashes and counts streamed bytes against a declared digest and size.
#[derive(Clone)]
pub struct Verifier {
    digest: Digest,
    size: u64,
    seen: u64,
    hasher: Hasher,
}

impl Verifier {
    /// Expect exactly `size` bytes hashing to `digest` (with `digest`'s algorithm).
    pub fn new(digest: &Digest, size: u64) -> Verifier {
        Verifier {
            hasher: Hasher::new(digest.algorithm()),
            digest: digest.clone(),
            size,
            seen: 0,
        }
    }

    /// The next bytes; an error as soon as they pass the declared size.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        self.seen += bytes.len() as u64;
        if self.seen > self.size {
            return Err(VerifyError::TooLong {
                digest: self.digest.clone(),
                size: self.size,
            });
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// Bytes fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The content has ended: it must have the declared size and digest.
    pub fn finish(self) -> Result<(), VerifyError> {
        if self.seen != self.size {
            return Err(VerifyError::TooShort {
                digest: self.digest,
                seen: self.seen,
                size: self.size,
            });
        }
        let actual = self.hasher.finish();
        if actual != self.digest {
            return Err(VerifyError::Mismatch {
                expected: self.digest,
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_declared_content() {
        let d = Digest::sha256(b"hello world");
        let mut v = Verifier::new(&d, 11);
        v.update(b"hello ").unwrap();
        v.update(b"world").unwrap();
        assert_eq!(v.seen(), 11);
        v.finish().unwrap();
    }

    #[test]
    fn refuses_long_short_and_wrong_content() {
        let d = Digest::sha256(b"hello");
        let mut v = Verifier::new(&d, 5);
        assert_eq!(
            v.update(b"hello!").unwrap_err(),
            VerifyError::TooLong {
                digest: d.clone(),
                size: 5
            }
        );
        let mut v = Verifier::new(&d, 5);
        v.update(b"hell").unwrap();
        let e = v.finish().unwrap_err();
        assert_eq!(e.to_string(), format!("{d}: got 4 bytes, expected 5"));
        let mut v = Verifier::new(&d, 5);
        v.update(b"jello").unwrap();
        assert_eq!(
            v.finish().unwrap_err(),
            VerifyError::Mismatch {
                expected: d,
                actual: Digest::sha256(b"jello")
            }
        );
    }
}
