//! The plan a copy executes: the manifests to write (children first, the root last), the
//! blobs they need, and where blobs not read from the source come from.
//!
//! The graph walk ([`crate::walk`]) makes one from the source; a conversion
//! ([`crate::convert`]) reads it and makes another, with rewritten manifests and re-encoded
//! layers in local files; the copy ([`crate::copy`]) executes whichever it is given. This
//! module is the one both sides name, so neither names the other.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use sealift_oci::{Descriptor, Digest, ManifestView};

use crate::transport::TransportError;

/// One manifest to write.
pub(crate) struct Node {
    /// What to write it as.
    pub(crate) desc: Descriptor,
    /// Its exact bytes.
    pub(crate) bytes: Vec<u8>,
    /// An index written over only some of its entries (platform filtering).
    pub(crate) sparse: bool,
}

/// Blobs read from local files instead of the source: layers a conversion re-encoded into a
/// temporary directory, removed when this is dropped (when the copy ends).
#[derive(Default)]
pub(crate) struct LocalBlobs {
    /// Held only to be removed on drop.
    _dir: Option<tempfile::TempDir>,
    files: HashMap<Digest, PathBuf>,
}

impl LocalBlobs {
    /// The blobs `files` holds, all in `dir`, which goes (with them) on drop.
    pub(crate) fn in_dir(dir: tempfile::TempDir, files: HashMap<Digest, PathBuf>) -> LocalBlobs {
        LocalBlobs {
            _dir: Some(dir),
            files,
        }
    }

    /// The file holding `digest`, when it is a local blob.
    pub(crate) fn get(&self, digest: &Digest) -> Option<&Path> {
        self.files.get(digest).map(PathBuf::as_path)
    }
}

/// What a copy writes, in order: blobs, then manifests, then the tag.
#[derive(Default)]
pub(crate) struct Plan {
    /// Manifests, children before parents; the root last.
    pub(crate) manifests: Vec<Node>,
    /// Blobs (configs and layers) of the manifests, each once.
    pub(crate) blobs: Vec<Descriptor>,
    /// Platforms kept of a root index (empty: a single manifest, or all).
    pub(crate) platforms: Vec<String>,
    /// The root is an index of which platform filtering kept only some entries.
    pub(crate) filtered: bool,
    /// Blobs that are not read from the source.
    pub(crate) local: LocalBlobs,
    /// `(source digest, written digest)` of every manifest a conversion changed, children
    /// first.
    pub(crate) converted: Vec<(Digest, Digest)>,
}

impl Plan {
    /// Whether `digest` is a manifest a conversion wrote (its referrers at the source name
    /// the old digest).
    pub(crate) fn is_converted(&self, digest: &Digest) -> bool {
        self.converted.iter().any(|(_, n)| n == digest)
    }

    /// The digests of the manifests the plan writes.
    pub(crate) fn manifest_digests(&self) -> HashSet<Digest> {
        self.manifests
            .iter()
            .map(|m| m.desc.digest.clone())
            .collect()
    }
}

/// Parse a manifest of the plan, naming it on failure.
pub(crate) fn parse(desc: &Descriptor, bytes: &[u8]) -> Result<ManifestView, TransportError> {
    ManifestView::parse(bytes, Some(&desc.media_type)).map_err(|source| TransportError::Manifest {
        digest: desc.digest.clone(),
        source,
    })
}

/// A new index with only `keep`'s entries: the one place a copy re-serialises an index
/// without a conversion, on request or when a destination refuses a sparse one.
pub(crate) fn rewrite_index(
    bytes: &[u8],
    keep: &HashSet<Digest>,
) -> Result<Vec<u8>, TransportError> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| TransportError::Unsupported(format!("rewriting index: {e}")))?;
    if let Some(arr) = v.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        arr.retain(|e| {
            e.get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse::<Digest>().ok())
                .is_some_and(|d| keep.contains(&d))
        });
    }
    serde_json::to_vec(&v).map_err(|e| TransportError::Unsupported(format!("rewriting index: {e}")))
}
