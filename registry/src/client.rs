//! The registry client: configuration, and the one path every request takes.
//!
//! A request goes: concurrency permit → Authorization (only for the registry's own
//! scheme://host:port) → send → manual redirects (Authorization dropped for other hosts)
//! → 401 handling (challenge, token, one re-try) → retry with backoff on connection
//! errors, timeouts, 429 and 5xx. Operations (`blob.rs`, `manifest.rs`, ...) build on
//! [`Registry::send`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::auth::{self, Scheme, Scope, TokenCache};
use super::credentials::{self, AuthEnv, Credentials};
use super::error::{parse_error_body, RegistryError};
use super::retry::{parse_retry_after, RetryPolicy};

/// How many redirects one request may follow.
pub const MAX_REDIRECTS: usize = 10;

/// [`Inner::speaks`]: the registry answered over TLS.
const SPEAKS_TLS: u8 = 1;
/// [`Inner::speaks`]: the registry refused the TLS handshake and answers plain HTTP.
const SPEAKS_PLAIN: u8 = 2;

/// The largest error or token body read into memory.
const SMALL_BODY_LIMIT: usize = 1024 * 1024;

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
    /// files and credential helpers described in [`credentials`](super::credentials).
    pub credentials: Option<Credentials>,
    /// Where to look credentials up; `None` means the process environment.
    pub auth_env: Option<AuthEnv>,
    /// Requests in flight at once, shared by every clone of the client (default 8). A
    /// [`BlobReader`](super::BlobReader) holds one permit until it is finished or dropped.
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
fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        h => h,
    }
}

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
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    looked_up: tokio::sync::OnceCell<Option<Credentials>>,
    scheme: Mutex<Option<Scheme>>,
    /// With `http_fallback`: what the registry was found to speak ([`SPEAKS_TLS`],
    /// [`SPEAKS_PLAIN`], or 0 before the first answer).
    speaks: AtomicU8,
    tokens: Mutex<TokenCache>,
    token_fetch: tokio::sync::Mutex<()>,
    limiter: super::limit::RateLimiter,
}

/// One request, described so that it can be sent again (retries, re-auth, redirects).
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub method: Method,
    pub url: Url,
    pub scopes: Vec<Scope>,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl Req {
    pub fn new(method: Method, url: Url, scopes: Vec<Scope>) -> Req {
        Req {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Req {
        // Values we set are built from validated names, digests and media types; a value
        // that is not a valid header (a media type with a newline) is left out rather
        // than sent mangled, and the registry then answers for its absence.
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Bytes) -> Req {
        self.body = Some(body);
        self
    }
}

/// A response, with the concurrency permit it holds until dropped.
pub(crate) struct Resp {
    pub resp: reqwest::Response,
    pub permit: OwnedSemaphorePermit,
    pub method: Method,
    /// The URL that answered (after redirects).
    pub url: Url,
}

impl Resp {
    pub fn status(&self) -> StatusCode {
        self.resp.status()
    }

    pub fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The Content-Length header (reqwest's own `content_length` is 0 for HEAD).
    pub fn content_length(&self) -> Option<u64> {
        self.header(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse().ok())
    }

    /// Turn an unexpected answer into an error, reading the registry's error body.
    pub async fn into_error(self, timeout: Duration) -> RegistryError {
        let method = self.method.to_string();
        let url = redact(&self.url);
        let status = self.status().as_u16();
        let body = read_limited(self, SMALL_BODY_LIMIT as u64, timeout)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let (code, message) = parse_error_body(&body);
        RegistryError::Http {
            method,
            url,
            status,
            code,
            message,
        }
    }
}

/// Read a body of at most `limit` bytes (`None` when it is longer), each read bounded by
/// `timeout`.
async fn read_limited(
    mut r: Resp,
    limit: u64,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, RegistryError> {
    if r.content_length().is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(timeout, r.resp.chunk()).await {
            Err(_) => {
                return Err(RegistryError::Timeout {
                    method: r.method.to_string(),
                    url: redact(&r.url),
                    after: timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(RegistryError::Transport {
                    method: r.method.to_string(),
                    url: redact(&r.url),
                    source: e,
                })
            }
            Ok(Ok(None)) => return Ok(Some(out)),
            Ok(Ok(Some(c))) => c,
        };
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
}

/// A URL as shown in errors and logs: without its query, which may hold a pre-signed
/// storage URL's signature, and without any user info.
pub(crate) fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    // Only fails for URLs that cannot have user info (not http/https): nothing to strip.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Check a repository path: lowercase components of `[a-z0-9._-]` separated by `/`.
pub fn check_repo(repo: &str) -> Result<(), RegistryError> {
    let ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            what: "repository",
            value: repo.to_string(),
        })
    }
}

/// Check a manifest reference: a tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
pub fn check_reference(reference: &str) -> Result<(), RegistryError> {
    let is_tag = !reference.is_empty()
        && reference.len() <= 128
        && reference
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if is_tag || reference.parse::<sealift_oci::Digest>().is_ok() {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            what: "reference",
            value: reference.to_string(),
        })
    }
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
                limiter: super::limit::RateLimiter::new(cfg_rps),
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

    /// Send a request: permits, auth, redirects, retries. Returns whatever status the
    /// last try got (429/5xx only once retries are spent); callers decide what is an
    /// error.
    pub(crate) async fn send(&self, req: &Req) -> Result<Resp, RegistryError> {
        let policy = &self.inner.cfg.retry;
        let mut tried = 0u32;
        loop {
            tried += 1;
            self.inner.limiter.wait().await;
            let outcome = self.send_authed(req).await;
            if let Ok(r) = &outcome {
                if self.inner.cfg.rate_limit_headers {
                    self.inner
                        .limiter
                        .observe(&self.inner.cfg.host, r.header("ratelimit-remaining"))
                        .await;
                }
            }
            let (retry_after, why) = match &outcome {
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    (
                        r.header(reqwest::header::RETRY_AFTER)
                            .and_then(parse_retry_after),
                        format!("HTTP {}", r.status().as_u16()),
                    )
                }
                Err(e) if e.is_transient() => (None, e.to_string()),
                _ => return outcome,
            };
            if !policy.may_retry(tried) {
                return outcome;
            }
            drop(outcome);
            let delay = policy.delay(tried, retry_after);
            tracing::warn!(
                method = %req.method,
                url = %redact(&req.url),
                attempt = tried,
                delay_ms = delay.as_millis() as u64,
                error = %why,
                "registry request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One try of a request, authenticating on a 401 from the registry (once).
    async fn send_authed(&self, req: &Req) -> Result<Resp, RegistryError> {
        let mut scopes = req.scopes.clone();
        let mut reauthed = false;
        loop {
            let authz = self.authorization(&scopes).await?;
            let resp = self.send_redirects(req, authz.as_deref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !same_origin(&resp.url, &self.origin())
            {
                return Ok(resp);
            }
            let challenges: Vec<auth::Challenge> = resp
                .resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .flat_map(|v| auth::parse_challenges(&String::from_utf8_lossy(v.as_bytes())))
                .collect();
            let chosen = auth::choose_scheme(&challenges);
            let insufficient = chosen
                .as_ref()
                .is_some_and(|c| c.2.as_deref() == Some("insufficient_scope"));
            let Some((scheme, challenge_scopes, _)) = chosen.filter(|_| !reauthed) else {
                let why = if insufficient {
                    Refusal::Scope(&scopes)
                } else {
                    Refusal::of(authz.as_deref())
                };
                return Err(self.unauthorized(resp, why).await);
            };
            reauthed = true;
            if let Some(sent) = &authz {
                if let Some(token) = sent.strip_prefix("Bearer ") {
                    lock(&self.inner.tokens).forget(token);
                }
            }
            let creds = self.credentials().await?;
            match &scheme {
                Scheme::Basic if !matches!(creds, Some(Credentials::Basic { .. })) => {
                    *lock(&self.inner.scheme) = Some(scheme);
                    return Err(self.unauthorized(resp, Refusal::Denied).await);
                }
                // Basic credentials were sent and refused: sending them again won't help.
                Scheme::Basic if authz.as_deref().is_some_and(|a| a.starts_with("Basic ")) => {
                    return Err(self.unauthorized(resp, Refusal::Credentials).await);
                }
                _ => {}
            }
            *lock(&self.inner.scheme) = Some(scheme);
            scopes = auth::merge_scopes(scopes.into_iter().chain(challenge_scopes));
            drop(resp);
        }
    }

    /// An Unauthorized error for a 401, saying what was tried.
    async fn unauthorized(&self, resp: Resp, why: Refusal<'_>) -> RegistryError {
        let host = self.inner.cfg.host.clone();
        let had_creds = self.inner.cfg.credentials.is_some()
            || self.inner.looked_up.get().is_some_and(|c| c.is_some());
        let body = read_limited(resp, SMALL_BODY_LIMIT as u64, self.timeout())
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let (code, message) = parse_error_body(&body);
        let said = match (code, message) {
            (Some(c), Some(m)) => format!(" ({c}: {m})"),
            (Some(c), None) => format!(" ({c})"),
            (None, Some(m)) => format!(" ({m})"),
            (None, None) => String::new(),
        };
        let detail = match why {
            _ if !had_creds => {
                format!("authentication required and no credentials were found for {host}{said}")
            }
            Refusal::Scope(scopes) => {
                let wanted: Vec<String> = scopes.iter().map(Scope::to_string).collect();
                format!(
                    "access denied: the credentials do not grant {}{said}",
                    wanted.join(" ")
                )
            }
            Refusal::Credentials => format!("credentials refused{said}"),
            Refusal::Denied => format!("access denied{said}"),
        };
        RegistryError::Unauthorized { host, detail }
    }

    /// The credentials to use: explicit, else looked up once (on first need).
    async fn credentials(&self) -> Result<Option<Credentials>, RegistryError> {
        if let Some(c) = &self.inner.cfg.credentials {
            return Ok(Some(c.clone()));
        }
        let inner = self.inner.clone();
        self.inner
            .looked_up
            .get_or_try_init(|| async move {
                let host = inner.cfg.host.clone();
                let env = inner
                    .cfg
                    .auth_env
                    .clone()
                    .unwrap_or_else(AuthEnv::from_process);
                // Credential helpers are processes: keep them off the async threads.
                tokio::task::spawn_blocking(move || credentials::lookup(&host, &env))
                    .await
                    .map_err(|e| RegistryError::Credentials {
                        host: inner.cfg.host.clone(),
                        detail: format!("lookup task failed: {e}"),
                    })?
            })
            .await
            .cloned()
    }

    /// The Authorization header value for `scopes`, when the registry's scheme is known.
    async fn authorization(&self, scopes: &[Scope]) -> Result<Option<String>, RegistryError> {
        let scheme = lock(&self.inner.scheme).clone();
        match scheme {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(match self.credentials().await? {
                Some(Credentials::Basic { username, password }) => {
                    Some(auth::basic_header(&username, &password))
                }
                _ => None,
            }),
            Some(Scheme::Bearer { realm, service }) => {
                if let Some(t) = lock(&self.inner.tokens).find(scopes, Instant::now()) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                // One fetch at a time: concurrent requests for the same scope wait for the
                // first and then find its token in the cache.
                let _guard = self.inner.token_fetch.lock().await;
                if let Some(t) = lock(&self.inner.tokens).find(scopes, Instant::now()) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, life) = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                let now = Instant::now();
                lock(&self.inner.tokens).insert(scopes.to_vec(), token.clone(), now + life, now);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Get a token from the realm: anonymously, with basic credentials (GET), or with an
    /// identity token (OAuth2 refresh-token POST). Retried like any request.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<(String, Duration), RegistryError> {
        let host = self.inner.cfg.host.clone();
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            host: host.clone(),
            detail: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::Unauthorized {
                host,
                detail: format!("token realm {realm:?} is not http(s)"),
            });
        }
        let creds = self.credentials().await?;
        // Credentials go to the realm the registry named (that is how token auth works),
        // but never in clear text over the network unless the registry itself is plain HTTP
        // or the realm is on loopback.
        if creds.is_some()
            && url.scheme() == "http"
            && self.origin().scheme() != "http"
            && !url.host_str().is_some_and(is_loopback_host)
        {
            return Err(RegistryError::Unauthorized {
                host,
                detail: format!(
                    "token realm {} is plain HTTP; refusing to send credentials",
                    redact(&url)
                ),
            });
        }
        let mut req = match &creds {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", refresh);
                form.append_pair("client_id", "sealift");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                if !scopes.is_empty() {
                    let joined: Vec<String> = scopes.iter().map(Scope::to_string).collect();
                    form.append_pair("scope", &joined.join(" "));
                }
                Req::new(Method::POST, url.clone(), Vec::new())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(Bytes::from(form.finish()))
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", &s.to_string());
                    }
                }
                if url.query() == Some("") {
                    url.set_query(None);
                }
                let mut r = Req::new(Method::GET, url.clone(), Vec::new());
                if let Some(Credentials::Basic { username, password }) = &creds {
                    r = r.header(AUTHORIZATION, &auth::basic_header(username, password));
                }
                r
            }
        };
        req.headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let policy = &self.inner.cfg.retry;
        let mut tried = 0;
        let resp = loop {
            tried += 1;
            let r = self.send_plain(&req).await;
            let transient = match &r {
                Ok(resp) => {
                    resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error()
                }
                Err(e) => e.is_transient(),
            };
            if !transient || !policy.may_retry(tried) {
                break r?;
            }
            tokio::time::sleep(policy.delay(tried, None)).await;
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = read_limited(resp, SMALL_BODY_LIMIT as u64, self.timeout())
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            let (code, message) = parse_error_body(&body);
            let who = match creds {
                None => "anonymous access",
                Some(_) => "the credentials",
            };
            let said = message
                .or(code)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                host,
                detail: format!("token server {} refused {who}{said}", redact(&url)),
            });
        }
        if !status.is_success() {
            return Err(resp.into_error(self.timeout()).await);
        }
        let shown = redact(&resp.url);
        let body = read_limited(resp, SMALL_BODY_LIMIT as u64, self.timeout())
            .await?
            .ok_or_else(|| RegistryError::TooLarge {
                what: format!("token response from {shown}"),
                limit: SMALL_BODY_LIMIT as u64,
                size: SMALL_BODY_LIMIT as u64,
            })?;
        let parsed: auth::TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::BadResponse {
                url: shown.clone(),
                detail: format!("token response is not JSON: {e}"),
            })?;
        tracing::debug!(realm = %shown, scopes = ?scopes.iter().map(Scope::to_string).collect::<Vec<_>>(), "got registry token");
        parsed
            .into_token()
            .ok_or_else(|| RegistryError::BadResponse {
                url: shown,
                detail: "token response has no token".into(),
            })
    }

    /// Send to a URL that is not the registry (the token realm), with the headers as given
    /// and no redirects followed.
    async fn send_plain(&self, req: &Req) -> Result<Resp, RegistryError> {
        let permit = self.acquire().await?;
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(b) = &req.body {
            rb = rb.body(b.clone());
        }
        let resp = self
            .await_response(&req.method, &req.url, 0, rb.send())
            .await?;
        Ok(Resp {
            resp,
            permit,
            method: req.method.clone(),
            url: req.url.clone(),
        })
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, RegistryError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RegistryError::Config {
                detail: "registry client was shut down".into(),
            })
    }

    async fn await_response(
        &self,
        method: &Method,
        url: &Url,
        body_len: usize,
        fut: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    ) -> Result<reqwest::Response, RegistryError> {
        // Headers come after the whole body is sent: allow a second per MiB on top.
        let limit = self.timeout() + Duration::from_secs((body_len >> 20) as u64);
        match tokio::time::timeout(limit, fut).await {
            Err(_) => Err(RegistryError::Timeout {
                method: method.to_string(),
                url: redact(url),
                after: limit,
            }),
            Ok(Err(e)) => Err(RegistryError::Transport {
                method: method.to_string(),
                url: redact(url),
                source: e.without_url(),
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// The registry's own origin as requests reach it: the configured base, or its plain
    /// HTTP form once a host allowed to fall back has refused TLS.
    fn origin(&self) -> Url {
        self.on_origin(&self.inner.base)
    }

    /// `url` as sent: request URLs are built from the configured base, and go over plain
    /// HTTP once the registry has refused TLS.
    pub(crate) fn on_origin(&self, url: &Url) -> Url {
        let mut u = url.clone();
        if self.inner.speaks.load(Ordering::Relaxed) == SPEAKS_PLAIN
            && same_origin(url, &self.inner.base)
        {
            // http and https are both special schemes: switching between them cannot fail.
            let _ = u.set_scheme("http");
        }
        u
    }

    /// Whether a failure of a request to `url` may be the registry not speaking TLS.
    fn may_fall_back(&self, url: &Url) -> bool {
        let cfg = &self.inner.cfg;
        cfg.http_fallback
            && !cfg.insecure
            && url.scheme() == "https"
            && self.inner.speaks.load(Ordering::Relaxed) != SPEAKS_TLS
            && same_origin(url, &self.inner.base)
    }

    /// Send, following redirects by hand; Authorization only to the registry itself.
    async fn send_redirects(&self, req: &Req, authz: Option<&str>) -> Result<Resp, RegistryError> {
        let mut url = self.on_origin(&req.url);
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let mut redirects = 0;
        loop {
            let mut rb = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .headers(req.headers.clone());
            let same = same_origin(&url, &self.origin());
            if same {
                if let Some(a) = authz {
                    let mut v =
                        HeaderValue::from_str(a).map_err(|_| RegistryError::Unauthorized {
                            host: self.inner.cfg.host.clone(),
                            detail: "token or credentials are not a valid header value".into(),
                        })?;
                    v.set_sensitive(true);
                    rb = rb.header(AUTHORIZATION, v);
                }
            }
            let body_len = body.as_ref().map_or(0, Bytes::len);
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            } else if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                rb = rb.body(Bytes::new());
            }
            let permit = self.acquire().await?;
            tracing::debug!(method = %method, url = %redact(&url), auth = same && authz.is_some(), "registry request");
            let resp = match self
                .await_response(&method, &url, body_len, rb.send())
                .await
            {
                Err(RegistryError::Transport { source, .. })
                    if self.may_fall_back(&url) && peer_is_not_tls(&source) =>
                {
                    tracing::info!(
                        host = %self.inner.cfg.host,
                        "the registry does not speak TLS ({source}); using plain HTTP, as for \
                         every loopback registry that refuses HTTPS"
                    );
                    self.inner.speaks.store(SPEAKS_PLAIN, Ordering::Relaxed);
                    url = self.on_origin(&url);
                    continue;
                }
                r => r?,
            };
            if url.scheme() == "https" && same_origin(&url, &self.inner.base) {
                self.inner.speaks.store(SPEAKS_TLS, Ordering::Relaxed);
            }
            let status = resp.status();
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            match (is_redirect, location) {
                (true, Some(_)) if redirects == MAX_REDIRECTS => {
                    return Err(RegistryError::TooManyRedirects {
                        url: redact(&req.url),
                        limit: MAX_REDIRECTS,
                    })
                }
                (true, Some(loc)) => {
                    redirects += 1;
                    let next = url.join(&loc).map_err(|e| RegistryError::BadResponse {
                        url: redact(&url),
                        detail: format!("redirect to unparsable Location: {e}"),
                    })?;
                    if !matches!(next.scheme(), "http" | "https") {
                        return Err(RegistryError::BadResponse {
                            url: redact(&url),
                            detail: format!("redirect to unsupported scheme {}", next.scheme()),
                        });
                    }
                    tracing::debug!(from = %redact(&url), to = %redact(&next), status = status.as_u16(), "following redirect");
                    if status == StatusCode::SEE_OTHER && method != Method::HEAD {
                        method = Method::GET;
                        body = None;
                    }
                    drop(resp);
                    drop(permit);
                    url = next;
                }
                _ => {
                    return Ok(Resp {
                        resp,
                        permit,
                        method,
                        url,
                    })
                }
            }
        }
    }

    /// Send and read a small body fully, retrying the whole request when the body breaks
    /// off. A non-success status comes back unread as `Err(resp)` for the caller to map;
    /// the body is `None` when it is over `limit`.
    pub(crate) async fn send_read(
        &self,
        req: &Req,
        limit: u64,
    ) -> Result<Result<(ReadResp, Option<Vec<u8>>), Resp>, RegistryError> {
        let policy = &self.inner.cfg.retry;
        let mut tried = 0;
        loop {
            tried += 1;
            let resp = self.send(req).await?;
            if !resp.status().is_success() {
                return Ok(Err(resp));
            }
            let meta = ReadResp {
                status: resp.status(),
                headers: resp.resp.headers().clone(),
                url: resp.url.clone(),
            };
            match read_limited(resp, limit, self.timeout()).await {
                Ok(body) => return Ok(Ok((meta, body))),
                Err(e) if e.is_transient() && policy.may_retry(tried) => {
                    tracing::warn!(url = %redact(&req.url), error = %e, "response body broke off; retrying");
                    tokio::time::sleep(policy.delay(tried, None)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a connection failed because the other end does not speak TLS: it answered the
/// ClientHello with bytes that are not a TLS record (a plain HTTP server's `400 Bad
/// Request`), or hung up on it. A certificate that does not verify, or a refused
/// connection, is not that.
fn peer_is_not_tls(e: &reqwest::Error) -> bool {
    if !e.is_connect() {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return matches!(t, rustls::Error::InvalidMessage(_));
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return true
            }
            // An io::Error's `source` skips the error it wraps: look at that one itself.
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// Why a 401 is final, for the error message.
enum Refusal<'a> {
    /// The token lacks these scopes (`error="insufficient_scope"`).
    Scope(&'a [Scope]),
    /// Basic credentials were sent and refused.
    Credentials,
    /// Anything else.
    Denied,
}

impl Refusal<'_> {
    fn of(sent: Option<&str>) -> Refusal<'static> {
        match sent {
            Some(a) if a.starts_with("Basic ") => Refusal::Credentials,
            _ => Refusal::Denied,
        }
    }
}

/// Status and headers of a response whose body has been read.
#[derive(Clone, Debug)]
pub(crate) struct ReadResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub url: Url,
}

impl ReadResp {
    pub fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Lock a std mutex, recovering from poisoning: the data (a token cache, the learned
/// scheme) stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    #[test]
    fn names() {
        assert!(check_repo("library/alpine").is_ok());
        assert!(check_repo("a-b/c_d/e.f").is_ok());
        for bad in ["", "A", "a//b", "../x", "a/..", "a?b", "/a", "a/"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
        assert!(check_reference("v1.0_x-y").is_ok());
        assert!(check_reference(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .is_ok());
        for bad in ["", ".x", "-x", "a/b", "a?b", &"x".repeat(129)] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_and_redaction() {
        let a = Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("http://127.0.0.1:5000/x?y").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://127.0.0.1:5001/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://127.0.0.1:5000/x").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://localhost:5000/x").unwrap()
        ));
        let u = Url::parse("https://u:p@s3.example/b/k?X-Amz-Signature=secret").unwrap();
        assert_eq!(redact(&u), "https://s3.example/b/k");
    }
}
