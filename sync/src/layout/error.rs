//! Errors of layout import and export. Each names the file, entry or digest at fault.

use std::path::PathBuf;

use sealift_store::Digest;

/// Errors from importing or exporting an OCI image layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// File system failure.
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
    /// Reading the tar stream failed (truncated, corrupt compression).
    #[error("reading {path}: {source}")]
    Tar {
        /// The tarball.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An entry that could escape the layout or is not a plain file.
    #[error("refusing tar entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A blob entry or file failed verification.
    #[error("{entry}: {source}")]
    Blob {
        /// The tar entry or file.
        entry: String,
        /// The store's verdict.
        #[source]
        source: sealift_store::Error,
    },
    /// No index.json.
    #[error("{0} has no index.json: not an OCI image layout")]
    MissingIndex(String),
    /// index.json or oci-layout unreadable.
    #[error("{path}: {reason}")]
    BadLayoutFile {
        /// Which file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Two layouts in one tar.
    #[error("tar holds layout files under both {0:?} and {1:?}; one layout per tarball")]
    TwoLayouts(String, String),
    /// A blob the graph needs is absent from the layout.
    #[error("{needed_by} needs {digest} ({media_type}), which the layout does not contain")]
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// Which manifest (or index.json) names it.
        needed_by: String,
    },
    /// An index.json entry needs a name and none was given.
    #[error("{0}")]
    Naming(String),
    /// Anything the store refused.
    #[error(transparent)]
    Store(#[from] sealift_store::Error),
}

impl LayoutError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> LayoutError {
        let path = path.into();
        move |source| LayoutError::Io {
            action,
            path,
            source,
        }
    }
}
