//! Errors of layout import and export. Each names the file, entry or digest at fault.

use std::path::PathBuf;

use sealift_oci::Digest;

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
    /// A file of a layout directory that could escape it or is not a plain file.
    #[error("refusing {path}: {reason}")]
    UnsafeFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A blob entry's tar header gives another size than its descriptor: refused before any
    /// of its bytes are written.
    #[error("tar entry {entry:?} is {size} bytes, but {by} declares {declared}; refusing it before writing any of it")]
    EntrySize {
        /// The entry's path.
        entry: String,
        /// The size in its tar header.
        size: u64,
        /// The size its descriptor declares.
        declared: u64,
        /// Who declares it: index.json or `manifest <digest>`.
        by: String,
    },
    /// A blob entry or file failed verification, or an image was refused as a whole (its
    /// graph nests too deep).
    #[error("{entry}: {source}")]
    Blob {
        /// The tar entry or file, or `image <ref name or digest>`.
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
    /// A selector matched no image in the store.
    #[error("{0} matches no image in the store")]
    NoMatch(String),
    /// An inventory file is unreadable.
    #[error("inventory {path}: {reason}")]
    BadInventory {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A bundle (usually a delta) needs blobs that neither it nor the store holds.
    #[error("{}", incomplete_message(.bundle, .base.as_ref(), .missing))]
    Incomplete {
        /// The bundle.
        bundle: String,
        /// The inventory a delta bundle was made against.
        base: Option<Digest>,
        /// Each missing digest and the images (ref names or digests) that need it.
        missing: Vec<(Digest, Vec<String>)>,
    },
    /// A split bundle's part is missing, damaged or unlisted.
    #[error("split bundle {checksums}: {reason}")]
    BadPart {
        /// The checksum file.
        checksums: String,
        /// What is wrong, naming the part.
        reason: String,
    },
    /// Options that cannot go together, or an image the format cannot hold.
    #[error("{0}")]
    Unsupported(String),
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

fn incomplete_message(
    bundle: &str,
    base: Option<&Digest>,
    missing: &[(Digest, Vec<String>)],
) -> String {
    let mut m = format!(
        "{bundle} needs {} blob(s) that neither the bundle nor the store holds; nothing was tagged",
        missing.len()
    );
    if let Some(b) = base {
        m.push_str(&format!(
            " (it is a delta bundle made against inventory {b}: import the bundles that inventory reflects first, or export a full bundle)"
        ));
    }
    for (d, images) in missing.iter().take(20) {
        m.push_str(&format!("\n  {d} needed by {}", images.join(", ")));
    }
    if missing.len() > 20 {
        m.push_str(&format!("\n  … and {} more", missing.len() - 20));
    }
    m
}
