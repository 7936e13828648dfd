//! sealift-serve: the store as a read-only OCI distribution registry.
//!
//! Clients (podman, containerd, skopeo, kubelets, sealift itself) pull straight from the
//! store: no second copy, manifests served as their exact stored bytes, blobs streamed from
//! the blob files with `Range` support, tags and the catalog paginated, and the OCI 1.1
//! referrers API computed from the store's referrer index. Every write method answers 405.
//!
//! Content is scoped to repositories, as a registry scopes it: a digest is served under
//! `<name>` only when a tag of `<name>` reaches it (through the manifest graph and the
//! referrers of every manifest on the way). The reachable sets are cached per repository
//! and dropped whenever a tag or referrer link changes ([`sealift_store::watch`]); a digest
//! tagged a moment ago is never refused.
//!
//! The sync daemon runs the same server in its own process: [`bind`] then [`Server::run`]
//! with its shutdown future. [`ServeOptions`] deserialises from a `[serve]` config section.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let store = Arc::new(sealift_store::Store::open("/var/lib/sealift")?);
//! let opts = sealift_serve::ServeOptions {
//!     addr: "127.0.0.1:0".parse()?,
//!     ..Default::default()
//! };
//! let server = sealift_serve::bind(store, &opts).await?;
//! println!("serving on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod accept;
mod app;
mod auth;
mod blob;
mod conn;
mod error;
mod listen;
mod manifest;
pub mod mirror;
mod range;
mod reach;
mod referrer;
mod route;
mod state;
mod stats;
mod tag;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealift_store::Store;

pub use error::ServeError;
pub use listen::Server;
pub use stats::ServeStats;

/// How to serve. Field names are the keys of a `[serve]` config section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeOptions {
    /// Address to listen on (`127.0.0.1:5000`; port 0 picks a free port).
    pub addr: SocketAddr,
    /// htpasswd file with bcrypt entries (`htpasswd -B`): when set, every request needs
    /// basic auth from one of its users.
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain for HTTPS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback. Off by default: passwords and
    /// content would cross the network in clear.
    pub insecure_plain_http: bool,
    /// How long a graceful shutdown waits for requests in flight (seconds, default 30).
    pub shutdown_grace_secs: u64,
    /// Close a connection once it has had no request in flight, or moved no byte, for this
    /// long (seconds, default 60). Also bounds a TLS handshake and the wait for the first
    /// request.
    pub idle_timeout_secs: u64,
    /// Connections open at once (default 4096; lowered to what the open-file limit allows).
    /// At the limit the connection idle the longest is closed to make room.
    pub max_connections: usize,
    /// Answer blob GETs with a `307 Temporary Redirect` to a presigned URL of the blob's
    /// object, so the bytes flow from the object store to the client (distribution's
    /// redirect middleware does the same). Only for stores whose blobs are in object
    /// storage: [`bind`] refuses it on local blob files. HEAD is always answered here.
    pub redirect_blobs: bool,
    /// How long a presigned URL of `redirect_blobs` stays valid (seconds, default 300,
    /// at most [`MAX_REDIRECT_TTL_SECS`]).
    pub redirect_ttl_secs: u64,
}

/// The longest lifetime of a presigned blob URL: a leaked URL reads that blob for at most
/// an hour, and a client fetching a blob needs minutes.
pub const MAX_REDIRECT_TTL_SECS: u64 = 3600;

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            htpasswd: None,
            tls_cert: None,
            tls_key: None,
            insecure_plain_http: false,
            shutdown_grace_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 4096,
            redirect_blobs: false,
            redirect_ttl_secs: 300,
        }
    }
}

/// Check the options, load the htpasswd file and TLS keys, raise the process's soft limit
/// on open files to its hard limit, and bind the listener. Fails before binding on anything
/// wrong in the options, naming the file or flag at fault.
pub async fn bind(store: Arc<Store>, opts: &ServeOptions) -> Result<Server, ServeError> {
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        (Some(_), None) => return Err(ServeError::TlsHalf { missing: "tls_key" }),
        (None, Some(_)) => {
            return Err(ServeError::TlsHalf {
                missing: "tls_cert",
            })
        }
    };
    if tls.is_none() && !opts.addr.ip().is_loopback() && !opts.insecure_plain_http {
        return Err(ServeError::PlainHttpNotLoopback { addr: opts.addr });
    }
    let auth = match &opts.htpasswd {
        Some(p) => Some(auth::Htpasswd::load(p)?),
        None => None,
    };
    if opts.idle_timeout_secs == 0 {
        return Err(ServeError::Option {
            name: "idle_timeout_secs",
            reason: "must be at least 1 second".into(),
        });
    }
    let redirect = redirect_ttl(&store, opts)?;
    let limits = listen::Limits {
        idle: Duration::from_secs(opts.idle_timeout_secs),
        connections: conn::connection_limit(opts.max_connections, conn::raise_fd_limit()),
        grace: Duration::from_secs(opts.shutdown_grace_secs),
    };
    let stats = Arc::new(ServeStats::default());
    if let Some(a) = &auth {
        a.publish_limit(&stats);
    }
    let state = state::State::new(store, auth, stats, redirect);
    listen::Server::bind(opts.addr, state, tls, limits).await
}

/// The presigned URLs' lifetime when blobs are redirected. Redirecting a store with local
/// blob files is refused rather than quietly streamed: whoever asked for it sized the
/// server for bytes that do not pass through it, and should learn at start that they will.
fn redirect_ttl(store: &Store, opts: &ServeOptions) -> Result<Option<Duration>, ServeError> {
    if !opts.redirect_blobs {
        return Ok(None);
    }
    if !(1..=MAX_REDIRECT_TTL_SECS).contains(&opts.redirect_ttl_secs) {
        return Err(ServeError::Option {
            name: "redirect_ttl_secs",
            reason: format!(
                "{} is outside 1..={MAX_REDIRECT_TTL_SECS} seconds",
                opts.redirect_ttl_secs
            ),
        });
    }
    if store.blob_location() == sealift_store::Location::Local {
        return Err(ServeError::Option {
            name: "redirect_blobs",
            reason: format!(
                "the store at {} keeps its blobs in local files, which have no URL to \
                 redirect to; serve without it (blobs are streamed), or keep the blobs in \
                 object storage (`init --blobs s3://BUCKET/PREFIX`)",
                store.root().display()
            ),
        });
    }
    Ok(Some(Duration::from_secs(opts.redirect_ttl_secs)))
}
