//! The store's error type. Each variant carries what the user needs to act on it.

use std::path::PathBuf;

use sealift_oci::digest::Digest;

/// Errors from store operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds the store.
    #[error(
        "store {path} is in use by process {pid} ({command}); wait for it to finish or stop it"
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// Holder's PID, from the LOCK file.
        pid: u32,
        /// Holder's command line, from the LOCK file.
        command: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the caller's stream failed.
    #[error("reading {digest}: {source}")]
    Read {
        /// The blob being read.
        digest: Digest,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(String),
    /// A record has a schema version this build does not read.
    #[error("store metadata has schema version {found}, this sealift reads version {expected}; use a matching sealift version")]
    SchemaVersion {
        /// In the store.
        found: u8,
        /// What this build reads.
        expected: u8,
    },
    /// A record could not be decoded.
    #[error("corrupt metadata record in {tree}: {reason}")]
    Corrupt {
        /// The metadata tree.
        tree: &'static str,
        /// Why.
        reason: String,
    },
    /// Content did not hash to the expected digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was declared.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content was longer or shorter than declared.
    #[error("size mismatch for {digest}: declared {expected} bytes, got {actual}{}", if *.truncated { " (stopped reading past the declared size)" } else { "" })]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Declared size.
        expected: u64,
        /// Bytes seen (a lower bound when `truncated`).
        actual: u64,
        /// Whether reading stopped because the stream ran past the declared size.
        truncated: bool,
    },
    /// A manifest was refused.
    #[error("manifest {digest}: {source}")]
    Manifest {
        /// The manifest's digest.
        digest: Digest,
        /// Why.
        #[source]
        source: sealift_oci::manifest::ManifestError,
    },
    /// A manifest names a required child the store does not have.
    #[error(
        "manifest {parent} needs {child} ({media_type}, {size} bytes), which is not in the store"
    )]
    MissingChild {
        /// The manifest.
        parent: Digest,
        /// The absent child.
        child: Digest,
        /// Its media type.
        media_type: String,
        /// Its size.
        size: u64,
    },
    /// A manifest's descriptor says one size, the stored child has another.
    #[error(
        "manifest {parent} describes {child} as {expected} bytes, but the stored blob has {actual}"
    )]
    ChildSize {
        /// The manifest.
        parent: Digest,
        /// The child.
        child: Digest,
        /// Size in the descriptor.
        expected: u64,
        /// Size in the store.
        actual: u64,
    },
    /// A manifest graph nests deeper than [`sealift_oci::manifest::MAX_DEPTH`].
    #[error(
        "the manifest graph of {root} nests more than {} manifests deep ({at} is at depth {depth}); refusing it (real images nest 2 or 3)",
        sealift_oci::manifest::MAX_DEPTH
    )]
    TooDeep {
        /// The graph's root.
        root: Digest,
        /// The first manifest found past the limit.
        at: Digest,
        /// Its depth (the root is 1).
        depth: usize,
    },
    /// Nothing by that digest.
    #[error("{0} is not in the store")]
    NotFound(Digest),
    /// Stored bytes that a manifest names as its image config are not one.
    #[error("config {digest}: {source}")]
    Config {
        /// The config.
        digest: Digest,
        /// Why.
        source: sealift_oci::config::ConfigError,
    },
    /// No such tag.
    #[error("{0} is not in the store")]
    UnknownRef(String),
    /// A reference string was malformed.
    #[error(transparent)]
    Ref(#[from] sealift_oci::reference::RefError),
    /// The lease used has expired or was released.
    #[error("lease {0} is no longer active")]
    LeaseGone(u64),
    /// A blob location (`--blobs`) could not be parsed.
    #[error("blob location {location:?}: {reason}")]
    BadLocation {
        /// What was given.
        location: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The blob backend (an object store) failed or refused a request.
    #[error("{action} {target} on {location}: {reason}")]
    Backend {
        /// The store's blob location, `s3://BUCKET/PREFIX`.
        location: String,
        /// What was being done.
        action: &'static str,
        /// On what (an object key).
        target: String,
        /// The backend's answer (never carries credentials).
        reason: String,
    },
    /// The store was created with its blobs elsewhere than the caller asked.
    #[error("store {path} keeps its blobs at {actual}, not {requested}; use `sealift migrate --blobs {requested}` to move them")]
    LocationMismatch {
        /// The store directory.
        path: PathBuf,
        /// Where the store keeps them.
        actual: String,
        /// Where the caller asked.
        requested: String,
    },
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

impl From<crate::kv::Error> for Error {
    fn from(e: crate::kv::Error) -> Self {
        Error::Db(e.to_string())
    }
}

/// A sled failure, from reading a store of format 1 to upgrade it.
impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Db(e.to_string())
    }
}

impl From<crate::kv::TransactionError<Error>> for Error {
    fn from(e: crate::kv::TransactionError<Error>) -> Self {
        match e {
            crate::kv::TransactionError::Abort(e) => e,
            crate::kv::TransactionError::Storage(e) => e.into(),
        }
    }
}
