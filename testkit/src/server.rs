//! An HTTP/1.1 server on `127.0.0.1` running on a thread with its own tokio runtime, so
//! that sync tests and async tests alike can start one and drop it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// Errors carried by response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of every handler here.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// A whole body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A running server; dropping it stops accepting, drops open connections and joins the thread.
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `127.0.0.1:0` and serves every connection with `handler`.
    pub fn spawn<H, F>(name: &str, handler: H) -> ServerThread
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("{name}: binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{name}: reading the listener's address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{name}: making the listener non-blocking: {e}"));
        let (shutdown, mut shutdown_rx) = oneshot::channel::<()>();
        let handler = Arc::new(handler);
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(thread_name.clone())
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{thread_name}: building a tokio runtime: {e}"));
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| {
                            panic!("{thread_name}: registering the listener with tokio: {e}")
                        });
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else {
                                    // Out of file descriptors or similar: back off, go on.
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                };
                                let _ = stream.set_nodelay(true);
                                let handler = handler.clone();
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| {
                                        let response = handler.as_ref()(req);
                                        async move { Ok::<_, Infallible>(response.await) }
                                    });
                                    // A client hanging up mid-response is not our error.
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Open connections (a stalled response, say) are dropped, not awaited.
                runtime.shutdown_background();
            })
            .unwrap_or_else(|e| panic!("{name}: spawning the server thread: {e}"));
        ServerThread {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
