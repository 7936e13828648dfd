//! A stream wrapper that verifies size and digest while the bytes pass through, so a sink
//! never commits content from an untrusted source without it being checked. The checking
//! is sealift-oci's [`Verifier`]; this is only its async reader.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sealift_oci::verify::{Verifier, VerifyError};
use sealift_oci::Descriptor;
use tokio::io::{AsyncRead, ReadBuf};

/// Verifies on EOF; errors as soon as the stream passes the declared size.
pub struct Verified<R> {
    inner: R,
    /// `None` once the end was checked.
    verifier: Option<Verifier>,
}

impl<R> Verified<R> {
    /// Wrap `inner`, which should produce exactly `desc`'s bytes.
    pub fn new(inner: R, desc: &Descriptor) -> Verified<R> {
        Verified {
            inner,
            verifier: Some(Verifier::new(&desc.digest, desc.size)),
        }
    }
}

fn io_error(e: VerifyError) -> io::Error {
    let kind = match e {
        VerifyError::TooShort { .. } => io::ErrorKind::UnexpectedEof,
        VerifyError::TooLong { .. } | VerifyError::Mismatch { .. } => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e.to_string())
}

impl<R: AsyncRead + Unpin> AsyncRead for Verified<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let new = &buf.filled()[before..];
        let me = &mut *self;
        if new.is_empty() {
            if let Some(v) = me.verifier.take() {
                v.finish().map_err(io_error)?;
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(v) = me.verifier.as_mut() {
            if let Err(e) = v.update(new) {
                // A read that fails hands out no bytes (tokio's readers assert it).
                buf.set_filled(before);
                return Poll::Ready(Err(io_error(e)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealift_oci::Digest;
    use tokio::io::AsyncReadExt;

    async fn read(bytes: &'static [u8], desc: &Descriptor) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Verified::new(bytes, desc).read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn passes_the_declared_bytes_and_refuses_others() {
        let desc = Descriptor::new("x", Digest::sha256(b"hello"), 5);
        assert_eq!(read(b"hello", &desc).await.unwrap(), b"hello");
        let e = read(b"jello", &desc).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().starts_with("digest mismatch"), "{e}");
        let e = read(b"hell", &desc).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("got 4 bytes, expected 5"), "{e}");
        let e = read(b"hello!", &desc).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().contains("more than the declared 5 bytes"),
            "{e}"
        );
    }
}
