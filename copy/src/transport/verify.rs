//! A stream wrapper that verifies size and digest while the bytes pass through, so a sink
//! never commits content from an untrusted source without it being checked.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sealift_oci::digest::Hasher;
use sealift_oci::Descriptor;
use tokio::io::{AsyncRead, ReadBuf};

/// Verifies on EOF; errors as soon as the stream passes the declared size.
pub struct Verified<R> {
    inner: R,
    desc: Descriptor,
    hasher: Option<Hasher>,
    seen: u64,
}

impl<R> Verified<R> {
    /// Wrap `inner`, which should produce exactly `desc`'s bytes.
    pub fn new(inner: R, desc: &Descriptor) -> Verified<R> {
        Verified {
            inner,
            hasher: Some(Hasher::new(desc.digest.algorithm())),
            desc: desc.clone(),
            seen: 0,
        }
    }
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
        let n = new.len() as u64;
        let me = &mut *self;
        if n == 0 {
            if let Some(h) = me.hasher.take() {
                if me.seen != me.desc.size {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: got {} bytes, expected {}",
                            me.desc.digest, me.seen, me.desc.size
                        ),
                    )));
                }
                let actual = h.finish();
                if actual != me.desc.digest {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("digest mismatch: expected {}, got {actual}", me.desc.digest),
                    )));
                }
            }
            return Poll::Ready(Ok(()));
        }
        me.seen += n;
        if me.seen > me.desc.size {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: more than the declared {} bytes",
                    me.desc.digest, me.desc.size
                ),
            )));
        }
        if let Some(h) = me.hasher.as_mut() {
            h.update(new);
        }
        Poll::Ready(Ok(()))
    }
}
