//! Exporting images from the store as an OCI image layout: a directory (blobs hard-linked
//! from the store where the file system allows, else copied) or a reproducible tarball.
//! [`plan`] walks the store for what to write; [`dir`] and [`tar`] write it.

mod dir;
mod plan;
mod tar;

use std::path::{Path, PathBuf};

use sealift_oci::{Digest, StoreRef};
use sealift_store::Store;

use crate::error::LayoutError;
use crate::format::Format;
use crate::inventory::Inventory;
use crate::Progress;

/// How to export.
#[derive(Clone, Default)]
pub struct ExportOptions {
    /// Also export each image's referrers (SBOMs, signatures), recursively.
    pub referrers: bool,
    /// Called with bytes written so far and the total.
    pub progress: Option<Progress>,
    /// Delta bundle: leave out every blob (not manifest) this inventory lists.
    pub base: Option<Inventory>,
    /// Write the tarball as numbered parts of at most this many bytes, plus a checksum file.
    pub split: Option<u64>,
}

/// What an export did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportReport {
    /// `ref name` → digest, in index.json order.
    pub images: Vec<(String, Digest)>,
    /// Blobs and manifests in the layout.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Directory export: blobs hard-linked from the store.
    pub linked: usize,
    /// Directory export: blobs copied (another file system, or links refused).
    pub copied: usize,
    /// Directory export: blobs the layout already had.
    pub present: usize,
    /// Delta export: blobs left out because the base inventory lists them.
    pub omitted: usize,
    /// Their bytes.
    pub omitted_bytes: u64,
    /// Split export: the parts written, in order (the checksum file beside them).
    pub parts: Vec<PathBuf>,
}

/// Export `refs` to `path` (directory or tarball by its name). Each index.json entry carries
/// `org.opencontainers.image.ref.name` = the ref as given (`repo:tag`).
pub fn export(
    store: &Store,
    refs: &[StoreRef],
    path: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, LayoutError> {
    let format = Format::from_path(path);
    if format == Format::Dir && (opts.base.is_some() || opts.split.is_some()) {
        return Err(LayoutError::Unsupported(format!(
            "{}: delta (--base) and split (--split) bundles are tarballs: name the output .tar, .tar.gz or .tar.zst",
            path.display()
        )));
    }
    let plan = plan::plan(store, refs, opts.referrers, opts.base.as_ref())?;
    let mut report = ExportReport {
        images: plan.images.clone(),
        blobs: plan.blobs.len(),
        bytes: plan.blobs.iter().map(|b| b.1).sum(),
        omitted: plan.omitted.0,
        omitted_bytes: plan.omitted.1,
        ..Default::default()
    };
    let progress = opts.progress.as_ref();
    match format {
        Format::Dir => {
            let counts = dir::export_dir(store, &plan, path, progress, report.bytes)?;
            (report.linked, report.copied, report.present) = counts;
        }
        f => {
            let base = opts.base.as_ref();
            let out = tar::Output {
                path,
                format: f,
                split: opts.split,
            };
            report.parts = tar::export_tar(store, &plan, out, base, progress, report.bytes)?;
        }
    }
    Ok(report)
}
