//! What can go wrong talking to a registry.
//!
//! Every variant names what the user needs to act on: the host, repository, reference or
//! digest, the HTTP status and the registry's own error code and message. URLs in errors
//! never carry credentials (the client never puts any in a URL), and tokens never appear.

use std::time::Duration;

use sealift_oci::Digest;

/// An error from the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configuration cannot work (bad host, unreadable CA file, ...).
    #[error("registry configuration: {detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// A repository name, tag or reference the registry API cannot carry.
    #[error("invalid {what} {value:?}")]
    InvalidName {
        /// `repository`, `reference`, ...
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The manifest, blob or repository does not exist.
    #[error("{host}/{repo}: {reference} not found")]
    NotFound {
        /// Registry host.
        host: String,
        /// Repository.
        repo: String,
        /// Tag, digest, or what was listed (`tags`).
        reference: String,
    },
    /// Authentication failed or was required and no credentials were available.
    #[error("{host}: unauthorized: {detail}")]
    Unauthorized {
        /// Registry host.
        host: String,
        /// Why: the registry's or token server's message, or what was missing.
        detail: String,
    },
    /// Looking credentials up failed (a credential helper failed, an auth file is broken).
    #[error("{host}: credentials lookup failed: {detail}")]
    Credentials {
        /// Registry host.
        host: String,
        /// What failed (never the secret itself).
        detail: String,
    },
    /// An HTTP status the operation does not accept, with the registry's error body.
    #[error("{method} {url}: HTTP {status}{}", code_message(code, message))]
    Http {
        /// Request method.
        method: String,
        /// Request URL (never with credentials).
        url: String,
        /// HTTP status code.
        status: u16,
        /// First error code of the registry's `{"errors":[...]}` body, when present.
        code: Option<String>,
        /// Its message (or the start of a non-JSON body).
        message: Option<String>,
    },
    /// Bytes received do not hash to the digest they were asked for or announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for or announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A blob's length is not the size it was described with.
    #[error("{digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Size received (or announced by the registry).
        actual: u64,
    },
    /// A manifest (or another bounded response) is over its limit.
    #[error("{what} is over the {limit}-byte limit ({size})")]
    TooLarge {
        /// What was being read (`manifest repo:tag`, ...).
        what: String,
        /// The limit in bytes.
        limit: u64,
        /// Size announced or read so far.
        size: u64,
    },
    /// The registry answered something the API does not allow (missing Location, bad JSON).
    #[error("{url}: unexpected response: {detail}")]
    BadResponse {
        /// Request URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// No answer (headers or the next body bytes) within the configured timeout.
    #[error("{method} {url}: no data for {after:?}")]
    Timeout {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// The idle timeout that passed.
        after: Duration,
    },
    /// The connection failed (refused, reset, TLS, ...).
    #[error("{method} {url}: {source}")]
    Transport {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// More redirects than the client follows.
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects {
        /// The original URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// Reading the caller's upload body failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn code_message(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" {c}: {m}"),
        (Some(c), None) => format!(" {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

impl RegistryError {
    /// The HTTP status, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Http { status, .. } => Some(*status),
            RegistryError::NotFound { .. } => Some(404),
            RegistryError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// Whether this is worth another try: connection failures, timeouts, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } | RegistryError::Timeout { .. } => true,
            RegistryError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The registry's JSON error body: `{"errors":[{"code":...,"message":...}]}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The first code and message of a registry error body; for a non-JSON body, its start as
/// the message.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    if let Ok(b) = serde_json::from_slice::<ErrorBody>(body) {
        if let Some(e) = b.errors.into_iter().next() {
            return (e.code, e.message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return (None, None);
    }
    let short: String = text.chars().take(200).collect();
    (None, Some(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_forms() {
        let (c, m) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(c.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(m.as_deref(), Some("manifest unknown"));
        assert_eq!(parse_error_body(b""), (None, None));
        let (c, m) = parse_error_body(b"<html>bad gateway</html>\n");
        assert_eq!(c, None);
        assert_eq!(m.as_deref(), Some("<html>bad gateway</html>"));
        let e = RegistryError::Http {
            method: "GET".into(),
            url: "http://h/v2/".into(),
            status: 503,
            code: Some("UNAVAILABLE".into()),
            message: Some("try later".into()),
        };
        assert_eq!(
            e.to_string(),
            "GET http://h/v2/: HTTP 503 UNAVAILABLE: try later"
        );
        assert!(e.is_transient());
    }
}
