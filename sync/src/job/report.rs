//! What a run reports: per image, per pruned tag, and for the whole job. Recorded in the
//! store (see `state.rs`) for `sync status` and `sync history`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Called after each image with its outcome (for progress lines).
pub type ImageCallback = Arc<dyn Fn(&ImageResult) + Send + Sync>;

/// What happened to one image.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ImageResult {
    /// `copied`, `skipped`, `failed` or `refused` (by `[job.verify]`), or `would copy` in a
    /// dry run.
    pub outcome: String,
    /// Source image (`docker://host/repo:tag`, ...).
    pub source: String,
    /// Destination image.
    pub destination: String,
    /// Source digest, when known.
    pub digest: Option<String>,
    /// Bytes transferred (or that would be).
    pub bytes: u64,
    /// Why it was skipped or failed; for an image copied with `rewrite_index = "auto"`,
    /// how its index was written (sparse, or rewritten because the destination refused it)
    /// and the digest written.
    pub reason: Option<String>,
}

/// A destination tag removed (or that would be) by retention.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PruneResult {
    /// The destination tag.
    pub destination: String,
    /// What it named.
    pub digest: String,
    /// `gone from source`, `beyond keep_last`; or why it was kept.
    pub reason: String,
    /// Removed (false in a dry run or when refused).
    pub removed: bool,
}

/// What a run did. Recorded in the store (except dry runs) for `sync status`/`history`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobReport {
    /// The job.
    pub job: String,
    /// Start, Unix milliseconds.
    pub started_ms: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Nothing was written.
    pub dry_run: bool,
    /// Stopped early (SIGINT/SIGTERM): images not started are not listed.
    pub cancelled: bool,
    /// An error that stopped the job before or around its images (listing the source).
    pub error: Option<String>,
    /// Images copied (or that would be).
    pub copied: Vec<ImageResult>,
    /// Images already up to date.
    pub skipped: Vec<ImageResult>,
    /// Images that failed, with the reason.
    pub failed: Vec<ImageResult>,
    /// Images `[job.verify]` refused (not copied, not tagged), with every signature's
    /// reason; checked again on the next run.
    pub refused: Vec<ImageResult>,
    /// Retention.
    pub pruned: Vec<PruneResult>,
    /// Bytes transferred (or that would be).
    pub bytes: u64,
}

impl JobReport {
    /// Whether everything succeeded (a refused image is not a success).
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.failed.is_empty() && self.refused.is_empty()
    }
}

/// An image's result with no digest, bytes or reason yet.
pub(crate) fn result(outcome: &str, source: String, destination: String) -> ImageResult {
    ImageResult {
        outcome: outcome.into(),
        source,
        destination,
        ..Default::default()
    }
}
