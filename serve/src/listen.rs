//! The accept loop: plain TCP or TLS, HTTP/1.1 and HTTP/2 through hyper-util, graceful
//! shutdown.
//!
//! One loop for both schemes (axum's own `serve` has no TLS): each connection gets its own
//! task, a TLS handshake bounded in time, and a header read timeout against clients that
//! open connections and never finish a request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::app;
use crate::conn::{self, Conns, Tracked};
use crate::error::ServeError;
use crate::state::State;
use crate::stats::ServeStats;

/// Longest a client may take to finish its TLS handshake, and to send request headers
/// (shorter when the idle timeout is).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pending connections the kernel queues for us (it caps this at `net.core.somaxconn`).
/// std and many servers use 128, which a burst of clients overflows.
const BACKLOG: u32 = 4096;

/// How connections are kept in check.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Close a connection after this long with no request in flight or no byte moved.
    pub idle: Duration,
    /// Connections open at once.
    pub connections: usize,
    /// How long shutdown waits for requests in flight.
    pub grace: Duration,
}

/// A bound server, not yet accepting. [`Server::run`] serves until its shutdown future
/// completes.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio's own bind do: a restarted server can rebind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl Server {
    pub(crate) async fn bind(
        addr: SocketAddr,
        state: Arc<State>,
        tls: Option<TlsAcceptor>,
        limits: Limits,
    ) -> Result<Server, ServeError> {
        let listener = listen(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server {
            listener,
            addr,
            state,
            tls,
            limits,
        })
    }

    /// The address bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server's counters, live while it runs.
    pub fn stats(&self) -> Arc<ServeStats> {
        self.state.stats.clone()
    }

    /// Serve until `shutdown` completes; then stop accepting, let requests in flight finish
    /// (up to the grace period) and return.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let Server {
            listener,
            addr,
            state,
            tls,
            limits,
        } = self;
        state.reach.set_watch(Some(state.store.watch_reach()));
        let watcher = tokio::spawn(watch_store(state.clone()));
        let state_after = state.clone();
        let conns = Conns::new(state.stats.clone());
        let slots = Arc::new(Semaphore::new(limits.connections));
        let router = app::router(state.clone());
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT.min(limits.idle));
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        tracing::info!(
            "serving the store on {}://{addr} (at most {} connections, idle timeout {}s)",
            if tls.is_some() { "https" } else { "http" },
            limits.connections,
            limits.idle.as_secs_f64()
        );
        tokio::pin!(shutdown);
        let result = loop {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(s) => s,
                Err(_) => {
                    // Full: make room by closing the connection idle the longest, or wait
                    // for one to close while new clients queue in the backlog.
                    conns.evict_one();
                    tokio::select! {
                        () = &mut shutdown => break Ok(()),
                        s = slots.clone().acquire_owned() => match s {
                            Ok(s) => s,
                            Err(_) => break Ok(()),
                        },
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) if transient(&e) => {
                        tracing::warn!("accepting a connection on {addr}: {e}");
                        // Out of file descriptors and the like: give others time to close.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(source) => break Err(ServeError::Accept { addr, source }),
                },
            };
            let _ = stream.set_nodelay(true);
            let registered = conns.register();
            let c = registered.conn.clone();
            let router = router.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let mut req: Request = req.map(axum::body::Body::new);
                req.extensions_mut().insert(peer);
                let in_flight = c.request();
                let router = router.clone();
                async move {
                    let resp = router.oneshot(req).await?;
                    Ok::<_, std::convert::Infallible>(
                        resp.map(|b| axum::body::Body::new(conn::Body::new(b, in_flight))),
                    )
                }
            });
            let builder = builder.clone();
            let acceptor = tls.clone();
            let watcher = graceful.watcher();
            let stats = state.stats.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let c = registered.conn.clone();
                let stream = Tracked::new(stream, c.clone());
                let serve = async move {
                    let result = match acceptor {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Some(acceptor) => {
                            let tls = match tokio::time::timeout(
                                HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!("TLS handshake with {peer}: {e}");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake with {peer} timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection(TokioIo::new(tls), service);
                            watcher.watch(conn.into_owned()).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                };
                tokio::select! {
                    () = serve => {}
                    evicted = c.idle(limits.idle) => {
                        let counter = if evicted { &stats.evicted } else { &stats.closed_idle };
                        counter.fetch_add(1, Ordering::AcqRel);
                        tracing::debug!(
                            "closing {} connection from {peer}",
                            if evicted { "(to make room) an idle" } else { "an idle" }
                        );
                    }
                }
                drop(registered);
            });
        };
        drop(listener);
        watcher.abort();
        state_after.reach.set_watch(None);
        if tokio::time::timeout(limits.grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "stopped waiting for requests in flight after {}s",
                limits.grace.as_secs()
            );
        }
        result
    }
}

/// Drop cached reachable sets whenever a tag or referrer link changes.
async fn watch_store(state: Arc<State>) {
    while std::future::poll_fn(|cx| state.reach.poll_watch(cx)).await {
        state.reach.invalidate();
    }
}

fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}
