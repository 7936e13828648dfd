//! The registry client: [`Registry`], one per registry host, and what its clones share
//! (connections, the concurrency limit, the rate limiter, the learned auth scheme and the
//! token cache).
//!
//! A request goes (`send.rs`): rate limit → Authorization (`auth/`) → one try on the network
//! with the concurrency permit and manual redirects, Authorization only for the registry's own
//! scheme://host:port (`redirect.rs`) → 401 handling (challenge, token, one re-try) → retry
//! with backoff on connection errors, timeouts, 429 and 5xx (`retry.rs`). Operations live in
//! one file per API area: `blob.rs`, `manifest.rs`, `tag.rs`, `catalog.rs`, `referrer.rs`,
//! `delete.rs`.

use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::Semaphore;
use url::Url;

use crate::auth::cache::TokenCache;
use crate::auth::challenge::Scheme;
use crate::config::api_host;
use crate::credentials::Credentials;
use crate::error::RegistryError;
use crate::http::Req;
use crate::limit::RateLimiter;

pub use crate::config::{is_loopback_host, RegistryConfig};
pub use crate::name::{check_reference, check_repo};
pub use crate::redirect::MAX_REDIRECTS;

/// A client for one registry. Cheap to clone; clones share the connection pool, the
/// concurrency limit and the token cache.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.inner.cfg.host)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: RegistryConfig,
    pub(crate) base: Url,
    pub(crate) http: reqwest::Client,
    pub(crate) permits: Arc<Semaphore>,
    /// Credentials looked up on first need, when none were configured.
    pub(crate) looked_up: tokio::sync::OnceCell<Option<Credentials>>,
    /// The scheme learned from the registry's first 401.
    pub(crate) scheme: Mutex<Option<Scheme>>,
    /// With `http_fallback`: what the registry was found to speak
    /// ([`SPEAKS_TLS`](crate::redirect::SPEAKS_TLS),
    /// [`SPEAKS_PLAIN`](crate::redirect::SPEAKS_PLAIN), or 0 before the first answer).
    pub(crate) speaks: AtomicU8,
    pub(crate) tokens: Mutex<TokenCache>,
    /// Held while fetching a token, so concurrent requests wait for one fetch.
    pub(crate) token_fetch: tokio::sync::Mutex<()>,
    pub(crate) limiter: RateLimiter,
}

impl Registry {
    /// A client for `cfg.host`. No I/O happens until the first request.
    pub fn new(cfg: RegistryConfig) -> Result<Registry, RegistryError> {
        let config_err = |detail: String| RegistryError::Config { detail };
        let host_ok = !cfg.host.is_empty()
            && cfg.host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !host_ok {
            return Err(config_err(format!(
                "registry host {:?} is not host[:port]",
                cfg.host
            )));
        }
        let scheme = if cfg.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", api_host(&cfg.host)))
            .map_err(|e| config_err(format!("registry host {:?}: {e}", cfg.host)))?;
        if base.host_str().is_none() || base.path() != "/" {
            return Err(config_err(format!(
                "registry host {:?} is not host[:port]",
                cfg.host
            )));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            // Redirects are followed by hand so Authorization never leaves the registry.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("sealift/", env!("CARGO_PKG_VERSION")));
        if !cfg.tls_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| config_err(format!("CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config_err(format!("CA file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(config_err(format!(
                    "CA file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| config_err(format!("HTTP client: {e}")))?;
        let permits = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        let cfg_rps = cfg.requests_per_second;
        Ok(Registry {
            inner: Arc::new(Inner {
                cfg,
                base,
                http,
                permits,
                looked_up: tokio::sync::OnceCell::new(),
                scheme: Mutex::new(None),
                speaks: AtomicU8::new(0),
                tokens: Mutex::new(TokenCache::default()),
                token_fetch: tokio::sync::Mutex::new(()),
                limiter: RateLimiter::new(cfg_rps),
            }),
        })
    }

    /// The host as configured.
    pub fn host(&self) -> &str {
        &self.inner.cfg.host
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.cfg
    }

    /// Check that the registry speaks the v2 API and that we may talk to it
    /// (`GET /v2/`, authenticating when challenged).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let req = Req::new(Method::GET, self.url("v2/")?, Vec::new());
        let resp = self.send(&req).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(resp.into_error(self.inner.cfg.timeout).await)
        }
    }

    /// `base` joined with an API path.
    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.inner
            .base
            .join(path)
            .map_err(|e| RegistryError::Config {
                detail: format!("bad API path {path:?}: {e}"),
            })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.cfg.timeout
    }
}

/// Lock a std mutex, recovering from poisoning: the data (a token cache, the learned
/// scheme) stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_api_host() {
        let r = Registry::new(RegistryConfig::new("docker.io")).unwrap();
        assert_eq!(r.inner.base.as_str(), "https://registry-1.docker.io/");
        // Loopback: HTTPS first (plain HTTP only once the TLS handshake is refused).
        let r = Registry::new(RegistryConfig::new("127.0.0.1:5000")).unwrap();
        assert_eq!(r.inner.base.as_str(), "https://127.0.0.1:5000/");
        let mut plain = RegistryConfig::new("127.0.0.1:5000");
        plain.insecure = true;
        let r = Registry::new(plain).unwrap();
        assert_eq!(r.inner.base.as_str(), "http://127.0.0.1:5000/");
        for bad in ["", "a/b", "user@host", "h?x"] {
            assert!(Registry::new(RegistryConfig::new(bad)).is_err(), "{bad}");
        }
    }
}
