//! Errors: [`ServeError`] for starting the server, [`ApiError`] for answering a request
//! with a distribution-spec error body.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP asked for on an address other than loopback.
    #[error(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: passwords \
         and images would cross the network in clear. Give a certificate and key \
         (--tls-cert/--tls-key, or tls_cert/tls_key in [serve]), or allow it explicitly \
         with --insecure-plain-http (insecure_plain_http = true)"
    )]
    PlainHttpNotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Only one of the certificate and the key was given.
    #[error("TLS needs both a certificate and a key: {missing} is missing")]
    TlsHalf {
        /// The option not given.
        missing: &'static str,
    },
    /// The certificate or key cannot be used.
    #[error("TLS {what} {path}: {reason}")]
    Tls {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of the htpasswd file is not a bcrypt entry.
    #[error("htpasswd file {path}, line {line}: {reason}")]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An option out of range.
    #[error("serve option {name}: {reason}")]
    Option {
        /// The option's name in `[serve]`.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Reading a file.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The address cannot be listened on.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Accepting connections failed for good.
    #[error("accepting connections on {addr}: {source}")]
    Accept {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Distribution-spec error codes used here: only codes of the spec's list, which is what
/// clients and the conformance suite accept in a 4xx body. (`UNKNOWN`, for a 500, is
/// distribution's.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Blob not in the repository.
    BlobUnknown,
    /// Malformed digest.
    DigestInvalid,
    /// Manifest not in the repository (or not acceptable to the client).
    ManifestUnknown,
    /// Malformed repository name.
    NameInvalid,
    /// Repository has no tags.
    NameUnknown,
    /// Malformed reference (a tag that cannot be one).
    ManifestInvalid,
    /// Write method, no such endpoint, a malformed query parameter or an unsatisfiable
    /// range.
    Unsupported,
    /// Credentials missing or wrong.
    Unauthorized,
    /// The client is backing off after failed sign-ins.
    TooManyRequests,
    /// Something on this side (the store) failed.
    Internal,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::Unsupported => "UNSUPPORTED",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Internal => "UNKNOWN",
        }
    }
}

/// An error answered as `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Spec code.
    pub code: Code,
    /// What was wrong, naming the thing.
    pub message: String,
    /// Extra headers (`Allow`, `WWW-Authenticate`, `Content-Range`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with no extra headers.
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// A store failure: logged in full here, reported to the client as a 500.
    pub fn store(what: &str, e: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("{what}: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            format!("{what}: {e}"),
        )
    }
}

impl From<sealift_store::Error> for ApiError {
    fn from(e: sealift_store::Error) -> ApiError {
        ApiError::store("reading the store", &e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": {} }]
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}
