//! Connection bookkeeping: the idle watchdog, the connection limit and the descriptor limit.
//!
//! A connection is closed when no byte has moved on it for the idle timeout, or when no
//! request has been in flight on it for that long. The second rule catches what the first
//! cannot: a client that finished its TLS handshake or sent the HTTP/2 preface and then
//! only trickles pings or settings frames never starts a request. hyper-util's version
//! detection waits for the first bytes without a timeout, so the watchdog, not hyper, is
//! what bounds a connection that sends nothing.
//!
//! At the connection limit the accept loop closes the connection that has been idle (no
//! request in flight) the longest and takes the new one; when none is idle it stops
//! accepting until one closes, and new clients wait in the listen backlog.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::stats::ServeStats;

/// Descriptors kept for everything but client connections (blob files, the metadata file, the listener).
const RESERVED_FDS: u64 = 64;

/// Raise the soft limit on open descriptors to the hard one, and return the soft limit now
/// in force (`None` when there is none). A server runs out of descriptors long before it
/// runs out of anything else when clients hold connections open.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let old = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::debug!(
                "raised the open-file limit from {old:?} to {:?}",
                lim.maximum
            ),
            Err(e) => tracing::warn!("cannot raise the open-file limit to {:?}: {e}", lim.maximum),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connection limit to apply: the one asked for, lowered so that connections alone
/// never use up the descriptors.
pub fn connection_limit(asked: usize, fd_limit: Option<u64>) -> usize {
    let Some(fds) = fd_limit else {
        return asked.max(1);
    };
    let room = fds.saturating_sub(RESERVED_FDS.max(fds / 8));
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if room < asked {
        tracing::warn!(
            "serving at most {room} connections at once (not {asked}): the open-file limit \
             is {fds}"
        );
    }
    asked.min(room).max(1)
}

/// One connection's state, shared by its task, its requests and the accept loop.
pub struct Conn {
    epoch: Instant,
    last_io: AtomicU64,
    last_request: AtomicU64,
    in_flight: AtomicUsize,
    close: Notify,
}

impl Conn {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch_io(&self) {
        self.last_io.store(self.now(), Ordering::Release);
    }

    /// A request has started; the guard ends it when dropped (with its response body).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_request.store(self.now(), Ordering::Release);
        InFlight(self.clone())
    }

    /// When the watchdog should close the connection, in ms since `epoch`.
    fn deadline(&self, idle: u64) -> u64 {
        let io = self.last_io.load(Ordering::Acquire).saturating_add(idle);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return io;
        }
        let req = self
            .last_request
            .load(Ordering::Acquire)
            .saturating_add(idle);
        io.min(req)
    }

    /// Resolves when the connection has been idle for `idle`, or was evicted. Returns
    /// whether it was evicted.
    pub async fn idle(&self, idle: Duration) -> bool {
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let deadline = self.deadline(idle);
            let now = self.now();
            if now >= deadline {
                return false;
            }
            let wake = tokio::time::Instant::from_std(self.epoch) + Duration::from_millis(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                // A request may have started since it was picked: then it stays.
                () = self.close.notified() => {
                    if self.in_flight.load(Ordering::Acquire) == 0 {
                        return true;
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.last_request.store(self.0.now(), Ordering::Release);
    }
}

/// The open connections, for eviction at the limit.
pub struct Conns {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    stats: Arc<ServeStats>,
}

/// A connection's place in [`Conns`]; leaving it (on drop) frees the place.
pub struct Registered {
    id: u64,
    conns: Arc<Conns>,
    /// The connection's state.
    pub conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
        self.conns.stats.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Conns {
    /// No connections yet.
    pub fn new(stats: Arc<ServeStats>) -> Arc<Conns> {
        Arc::new(Conns {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            stats,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a connection just accepted.
    pub fn register(self: &Arc<Self>) -> Registered {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            last_io: AtomicU64::new(now),
            last_request: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, conn.clone());
        self.stats.open.fetch_add(1, Ordering::AcqRel);
        self.stats.accepted.fetch_add(1, Ordering::AcqRel);
        Registered {
            id,
            conns: self.clone(),
            conn,
        }
    }

    /// Ask the connection idle the longest (no request in flight) to close. Whether there
    /// was one.
    pub fn evict_one(&self) -> bool {
        let open = self.lock();
        let victim = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| {
                c.last_request
                    .load(Ordering::Acquire)
                    .max(c.last_io.load(Ordering::Acquire))
            });
        match victim {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A socket that records on its connection when bytes move.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Tracked<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, conn: Arc<Conn>) -> Tracked<S> {
        Tracked { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch_io();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch_io();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch_io();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it (sent
/// in full, or the connection gone).
pub struct Body {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl Body {
    /// Wrap a response body.
    pub fn new(inner: axum::body::Body, in_flight: InFlight) -> Body {
        Body {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for Body {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::connection_limit;

    #[test]
    fn limits_leave_descriptors_for_the_store() {
        assert_eq!(connection_limit(4096, None), 4096);
        assert_eq!(connection_limit(4096, Some(1024)), 1024 - 128);
        assert_eq!(connection_limit(4096, Some(20000)), 4096);
        assert_eq!(connection_limit(100, Some(200)), 100);
        assert_eq!(connection_limit(100, Some(10)), 1);
        assert_eq!(connection_limit(0, Some(10_000)), 1);
    }
}
