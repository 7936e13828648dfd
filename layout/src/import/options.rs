//! What an import is asked to do and what it reports.

use std::collections::HashSet;

use sealift_oci::{Digest, StoreRef};

use crate::Progress;

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// Name for an image whose index.json entry has no `org.opencontainers.image.ref.name`,
    /// or whose ref name is a bare tag (then only its repository is used).
    pub tag: Option<StoreRef>,
    /// Called with bytes read so far and the total (0 when unknown).
    pub progress: Option<Progress>,
    /// Tag (or pin) an image only if the signatures the bundle carries for it satisfy this
    /// policy; the others are reported in [`ImportReport::refused`] and left untagged.
    pub verify: Option<sealift_trust::Policy>,
}

/// One image named by the layout's index.json.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportedImage {
    /// The tag it got (`repo:tag`), if any.
    pub reference: Option<String>,
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The signature policy's verdict, when the import had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<sealift_trust::Verdict>,
}

/// An image the signature policy refused: its blobs are in the store (unreferenced, for
/// GC to take), and neither it nor its cosign tags were tagged or pinned.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RefusedImage {
    /// The name index.json gives it (`repo:tag`), else its digest.
    pub image: String,
    /// Its digest.
    pub digest: Digest,
    /// Why, per signature found.
    pub reason: String,
    /// The same, typed.
    #[serde(skip)]
    pub error: sealift_trust::TrustError,
}

/// What an import did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// Images from index.json (tagged or pinned).
    pub images: Vec<ImportedImage>,
    /// Images the signature policy refused (not tagged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedImage>,
    /// Blobs and manifests that were new to the store.
    pub blobs_written: usize,
    /// Blobs the store already had.
    pub blobs_present: usize,
    /// Bytes written to the store.
    pub bytes_written: u64,
    /// Non-fatal remarks.
    pub warnings: Vec<String>,
    /// Digests already counted, so a blob met twice counts once.
    #[serde(skip)]
    counted: HashSet<Digest>,
}

pub(crate) fn count(
    report: &mut ImportReport,
    d: &Digest,
    outcome: sealift_store::PutOutcome,
    size: u64,
) {
    if !report.counted.insert(d.clone()) {
        return;
    }
    match outcome {
        sealift_store::PutOutcome::Written => {
            report.blobs_written += 1;
            report.bytes_written += size;
        }
        sealift_store::PutOutcome::Present => report.blobs_present += 1,
    }
}
