//! The HTTP request/response core, without the network: a request described so that it can
//! be sent again (retries, re-authentication, redirects), a response holding its
//! concurrency permit, bounded body reads, URLs as shown in errors, the same-origin rule
//! Authorization follows, and telling a peer that does not speak TLS from other failures.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

use crate::auth::challenge::Scope;
use crate::error::{parse_error_body, RegistryError};

/// The largest error or token body read into memory.
pub(crate) const SMALL_BODY_LIMIT: usize = 1024 * 1024;

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

    /// The registry's error code and message from the body, as far as it can be read
    /// (bounded; a body that breaks off or is too long gives none).
    pub async fn error_body(self, timeout: Duration) -> (Option<String>, Option<String>) {
        let body = read_limited(self, SMALL_BODY_LIMIT as u64, timeout)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        parse_error_body(&body)
    }

    /// Turn an unexpected answer into an error, reading the registry's error body.
    pub async fn into_error(self, timeout: Duration) -> RegistryError {
        let method = self.method.to_string();
        let url = redact(&self.url);
        let status = self.status().as_u16();
        let (code, message) = self.error_body(timeout).await;
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
pub(crate) async fn read_limited(
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

pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether a connection failed because the other end does not speak TLS: it answered the
/// ClientHello with bytes that are not a TLS record (a plain HTTP server's `400 Bad
/// Request`), or hung up on it. A certificate that does not verify, or a refused
/// connection, is not that.
pub(crate) fn peer_is_not_tls(e: &reqwest::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
