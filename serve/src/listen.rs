//! The accept loop: plain TCP or TLS, HTTP/1.1 and HTTP/2 through hyper-util, graceful
//! shutdown.
//!
//! One loop for both schemes (axum's own `serve` has no TLS): each connection gets its own
//! task, a TLS handshake bounded in time, and a header read timeout against clients that
//! open connections and never finish a request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::app::{self, State};
use crate::error::ServeError;

/// How long a client may take to finish its TLS handshake, and to send request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound server, not yet accepting. [`Server::run`] serves until its shutdown future
/// completes.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    grace: Duration,
}

impl Server {
    pub(crate) async fn bind(
        addr: SocketAddr,
        state: Arc<State>,
        tls: Option<TlsAcceptor>,
        grace: Duration,
    ) -> Result<Server, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server {
            listener,
            addr,
            state,
            tls,
            grace,
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

    /// Serve until `shutdown` completes; then stop accepting, let requests in flight finish
    /// (up to the grace period) and return.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let Server {
            listener,
            addr,
            state,
            tls,
            grace,
        } = self;
        state.reach.set_watch(Some(state.store.watch_reach()));
        let watcher = tokio::spawn(watch_store(state.clone()));
        let state_after = state.clone();
        let router = app::router(state);
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT);
        let builder = Arc::new(builder);
        tracing::info!(
            "serving the store on {}://{addr}",
            if tls.is_some() { "https" } else { "http" }
        );
        tokio::pin!(shutdown);
        let result = loop {
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
            let router = router.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let mut req: Request = req.map(axum::body::Body::new);
                req.extensions_mut().insert(peer);
                router.clone().oneshot(req)
            });
            let builder = builder.clone();
            match &tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection from {peer}: {e}");
                        }
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let tls =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
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
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            tracing::debug!("connection from {peer}: {e}");
                        }
                    });
                }
            }
        };
        drop(listener);
        watcher.abort();
        state_after.reach.set_watch(None);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "stopped waiting for requests in flight after {}s",
                grace.as_secs()
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
