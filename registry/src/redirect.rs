//! One try of a request on the network: a concurrency permit, the idle timeout, redirects
//! followed by hand with Authorization only for the registry's own scheme://host:port,
//! and the switch to plain HTTP when a loopback registry refuses the TLS handshake.
//! Authentication and retries wrap this in `send.rs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::{peer_is_not_tls, redact, same_origin, Req, Resp};

/// How many redirects one request may follow.
pub const MAX_REDIRECTS: usize = 10;

/// [`Inner::speaks`](crate::client::Inner): the registry answered over TLS.
pub(crate) const SPEAKS_TLS: u8 = 1;
/// [`Inner::speaks`](crate::client::Inner): the registry refused the TLS handshake and
/// answers plain HTTP.
pub(crate) const SPEAKS_PLAIN: u8 = 2;

impl Registry {
    /// Send to a URL that is not the registry (the token realm), with the headers as given
    /// and no redirects followed.
    pub(crate) async fn send_plain(&self, req: &Req) -> Result<Resp, RegistryError> {
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
    pub(crate) fn origin(&self) -> Url {
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
    pub(crate) async fn send_redirects(
        &self,
        req: &Req,
        authz: Option<&str>,
    ) -> Result<Resp, RegistryError> {
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
                    let next = redirect_target(&url, &loc)?;
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
}

/// Where a redirect from `url` with this `Location` goes: resolved against `url`, and only
/// to http or https.
fn redirect_target(url: &Url, location: &str) -> Result<Url, RegistryError> {
    let next = url.join(location).map_err(|e| RegistryError::BadResponse {
        url: redact(url),
        detail: format!("redirect to unparsable Location: {e}"),
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(RegistryError::BadResponse {
            url: redact(url),
            detail: format!("redirect to unsupported scheme {}", next.scheme()),
        });
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets() {
        let from = Url::parse("https://r.example/v2/a/blobs/x?sig=1").unwrap();
        let to = |loc: &str| redirect_target(&from, loc).map(|u| u.to_string());
        assert_eq!(to("/b").unwrap(), "https://r.example/b");
        assert_eq!(
            to("http://s3.example/k?X=1").unwrap(),
            "http://s3.example/k?X=1"
        );
        for bad in ["file:///etc/passwd", "ftp://x/y", "http://[::1"] {
            match to(bad) {
                Err(RegistryError::BadResponse { url, .. }) => {
                    assert_eq!(url, "https://r.example/v2/a/blobs/x")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
