//! How to reach one registry: [`RegistryConfig`] and its defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::{AuthEnv, Credentials};
use crate::retry::RetryPolicy;

/// How to reach one registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `host[:port]`. `docker.io` (and `index.docker.io`) maps to `registry-1.docker.io`
    /// for API calls; credentials are still looked up under the name given.
    pub host: String,
    /// Plain HTTP only, never HTTPS.
    pub insecure: bool,
    /// HTTPS first, and plain HTTP when the other end turns out not to speak TLS (it
    /// answers the TLS handshake with something that is not TLS, or hangs up): what
    /// containerd and skopeo do for loopback hosts. The scheme found is kept for the
    /// client's life, so the handshake is tried once. Certificate errors never fall back.
    /// [`RegistryConfig::new`] sets it for loopback hosts (`127.0.0.0/8`, `localhost`,
    /// `[::1]`); `[[registry]] insecure = false` clears it.
    pub http_fallback: bool,
    /// Verify TLS certificates (default true).
    pub tls_verify: bool,
    /// Extra PEM root certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Explicit credentials; when `None` they are looked up (on the first 401) in the auth
    /// files and credential helpers described in [`credentials`](crate::credentials).
    pub credentials: Option<Credentials>,
    /// Where to look credentials up; `None` means the process environment.
    pub auth_env: Option<AuthEnv>,
    /// Requests in flight at once, shared by every clone of the client (default 8). A
    /// [`BlobReader`](crate::BlobReader) holds one permit until it is finished or dropped.
    pub max_concurrent: usize,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// Idle timeout: waiting for response headers, or for the next bytes of a body
    /// (default 60 s). Uploads get one extra second per MiB of body for the headers.
    pub timeout: Duration,
    /// Blobs up to this size are uploaded in one PUT; bigger ones in PATCH chunks of this
    /// size (default 16 MiB). Each chunk is buffered so that it can be retried.
    pub chunk_size: usize,
    /// Page size (`n`) asked for when listing tags and the catalog (default 1000).
    pub page_size: usize,
    /// Requests started per second, over every clone (default: unlimited). Retries and
    /// re-authentications count too.
    pub requests_per_second: Option<f64>,
    /// Log and slow down as the registry's `RateLimit-Remaining` header (Docker Hub) runs
    /// out (default true).
    pub rate_limit_headers: bool,
}

impl RegistryConfig {
    /// Defaults for `host`: HTTPS with verification; for loopback hosts, plain HTTP when
    /// the TLS handshake is refused ([`RegistryConfig::http_fallback`]).
    pub fn new(host: impl Into<String>) -> RegistryConfig {
        let host = host.into();
        RegistryConfig {
            insecure: false,
            http_fallback: is_loopback_host(&host),
            host,
            tls_verify: true,
            ca_file: None,
            credentials: None,
            auth_env: None,
            max_concurrent: 8,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            chunk_size: 16 * 1024 * 1024,
            page_size: 1000,
            requests_per_second: None,
            rate_limit_headers: true,
        }
    }
}

/// Whether `host[:port]` names a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host API calls go to.
pub(crate) fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        h => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "docker.io", "[::2]:1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
        let local = RegistryConfig::new("127.0.0.1:5000");
        assert!(!local.insecure && local.http_fallback);
        let remote = RegistryConfig::new("quay.io");
        assert!(!remote.insecure && !remote.http_fallback);
    }
}
