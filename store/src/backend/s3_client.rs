//! The S3 backend's client and runtime: requests run on a small tokio runtime of the
//! backend's own and are waited for on std channels, so callers may block anywhere
//! (plain threads, tokio's blocking pool, even inside an async task). Streams (object
//! bodies, listings) cross over bounded channels.

use std::future::Future;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, TrySendError};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use tokio::sync::Notify;

use super::{blob_key, ChunkStream, Location};
use crate::error::{Error, Result};
use sealift_oci::digest::Digest;

/// Chunks (reads) or objects (listings) buffered between the runtime and the reader.
const CHANNEL: usize = 16;

/// What staged writes and readers share with the backend (they keep the runtime alive).
pub(super) struct Shared {
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) client: Arc<AmazonS3>,
    pub(super) bucket: String,
    /// `PREFIX/` or empty: every key starts with it.
    pub(super) key_prefix: String,
    /// `PREFIX/blobs` or `blobs`: what listings cover.
    pub(super) blobs_root: String,
    pub(super) location: Location,
    pub(super) endpoint: String,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A plain drop blocks, and panics inside an async context; nothing of ours is
        // left to finish by now.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Shared {
    pub(super) fn path(&self, d: &Digest) -> Path {
        Path::from(self.key(d))
    }

    pub(super) fn key(&self, d: &Digest) -> String {
        format!("{}{}", self.key_prefix, blob_key(d))
    }

    pub(super) fn error(
        &self,
        action: &'static str,
        target: &str,
        e: object_store::Error,
    ) -> Error {
        Error::Backend {
            location: self.location.to_string(),
            action,
            target: target.to_string(),
            reason: self.reason(&e),
        }
    }

    /// A one-line reason, with the common S3 refusals said plainly. object_store's messages
    /// name the request and the server's answer, never the credentials (it signs headers).
    pub(super) fn reason(&self, e: &object_store::Error) -> String {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let hint = if text.contains("NoSuchBucket") {
            format!("bucket {} does not exist at {}", self.bucket, self.endpoint)
        } else if text.contains("InvalidAccessKeyId") || text.contains("SignatureDoesNotMatch") {
            "the endpoint refused the credentials (check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY or ~/.aws/credentials)"
                .to_string()
        } else if text.contains("AccessDenied") {
            format!("access denied to bucket {}", self.bucket)
        } else {
            return text;
        };
        format!("{hint} ({text})")
    }

    /// Run `fut` on the backend's runtime and wait for it from any thread.
    pub(super) fn run<T: Send + 'static>(
        &self,
        action: &'static str,
        target: &str,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T> {
        let rx = self.spawn(fut);
        match rx.recv() {
            Ok(r) => r.map_err(|e| self.error(action, target, e)),
            Err(_) => Err(self.stopped(action, target)),
        }
    }

    /// Start `fut` on the runtime; its result arrives on the returned channel.
    pub(super) fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Receiver<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx
    }

    pub(super) fn stopped(&self, action: &'static str, target: &str) -> Error {
        Error::Backend {
            location: self.location.to_string(),
            action,
            target: target.to_string(),
            reason: "the S3 client's runtime stopped".into(),
        }
    }

    /// Items of `stream`, pulled by the runtime and handed over a bounded channel: at most
    /// [`CHANNEL`] items wait, so memory does not grow with the size of what is streamed.
    pub(super) fn bridge<T: Send + 'static>(
        self: &Arc<Self>,
        mut stream: BoxStream<'static, object_store::Result<T>>,
    ) -> Bridge<T> {
        let (tx, rx) = mpsc::sync_channel::<Msg<T>>(CHANNEL);
        let room = Arc::new(Notify::new());
        let producer_room = room.clone();
        self.handle.spawn(async move {
            loop {
                let mut msg = match stream.next().await {
                    Some(Ok(item)) => Msg::Item(item),
                    Some(Err(e)) => Msg::Fail(e),
                    None => Msg::End,
                };
                let last = !matches!(msg, Msg::Item(_));
                // Never block a runtime thread on a full channel: wait for the reader to
                // take something (a stored permit covers a take that raced this wait).
                loop {
                    match tx.try_send(msg) {
                        Ok(()) => break,
                        Err(TrySendError::Full(m)) => {
                            msg = m;
                            producer_room.notified().await;
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                if last {
                    return;
                }
            }
        });
        Bridge {
            rx: Some(rx),
            room,
            shared: self.clone(),
        }
    }
}

enum Msg<T> {
    Item(T),
    Fail(object_store::Error),
    End,
}

/// The receiving end of [`Shared::bridge`].
pub(super) struct Bridge<T> {
    rx: Option<Receiver<Msg<T>>>,
    room: Arc<Notify>,
    shared: Arc<Shared>,
}

impl<T> Bridge<T> {
    /// The next item; `None` at the end. A stream cut short (the runtime stopped) is an
    /// error, never a silent end.
    pub(super) fn next(&mut self) -> Option<std::result::Result<T, String>> {
        let rx = self.rx.as_ref()?;
        let msg = rx.recv();
        self.room.notify_one();
        match msg {
            Ok(Msg::Item(t)) => Some(Ok(t)),
            Ok(Msg::Fail(e)) => {
                self.rx = None;
                Some(Err(self.shared.reason(&e)))
            }
            Ok(Msg::End) => {
                self.rx = None;
                None
            }
            Err(_) => {
                self.rx = None;
                Some(Err("the S3 client stopped mid-stream".into()))
            }
        }
    }
}

impl<T> Drop for Bridge<T> {
    fn drop(&mut self) {
        // Close the channel, then wake a producer waiting for room so it sees that.
        self.rx = None;
        self.room.notify_one();
    }
}

/// A ranged GET's body as a `Read`.
pub(super) struct ObjectReader {
    pub(super) chunks: Bridge<Bytes>,
    pub(super) current: Bytes,
    /// Bytes the response promised and not yet read: a body that ends early is an error.
    pub(super) left: u64,
    pub(super) key: String,
}

impl ObjectReader {
    /// Make `current` hold unread bytes; `false` at the (complete) end.
    fn fill(&mut self) -> io::Result<bool> {
        while self.current.is_empty() {
            match self.chunks.next() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(io::Error::other(format!("reading {}: {e}", self.key))),
                None if self.left > 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} ended {} bytes early", self.key, self.left),
                    ))
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Take up to `max` bytes of `current` (which `fill` made non-empty).
    fn take(&mut self, max: usize) -> Bytes {
        let b = self.current.split_to(max.min(self.current.len()));
        self.left = self.left.saturating_sub(b.len() as u64);
        b
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.fill()? {
            return Ok(0);
        }
        let b = self.take(out.len());
        out[..b.len()].copy_from_slice(&b);
        Ok(b.len())
    }
}

impl ChunkStream for ObjectReader {
    fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        Ok(self.fill()?.then(|| self.take(max)))
    }
}
