//! Writing an export as a layout tarball (plain, gzip or zstd; whole or split into parts).

use std::io::Write;
use std::path::{Path, PathBuf};

use sealift_oci::Digest;
use sealift_store::Store;

use super::plan::Plan;
use crate::compress::Compressor;
use crate::error::LayoutError;
use crate::format::{index_json, write_partial, Format, ANNOTATION_BASE};
use crate::inventory::Inventory;
use crate::split::SplitWriter;
use crate::tar_write::TarLayoutWriter;
use crate::Progress;

/// Where and how the tarball goes.
pub(super) struct Output<'a> {
    pub(super) path: &'a Path,
    pub(super) format: Format,
    /// Split into parts of at most this many bytes.
    pub(super) split: Option<u64>,
}

/// Write the tarball to `PATH.partial` (renamed when complete) or, split, as parts; `base`
/// names the inventory a delta was made against; `total` bytes for progress.
pub(super) fn export_tar(
    store: &Store,
    plan: &Plan,
    out: Output<'_>,
    base: Option<&Inventory>,
    progress: Option<&Progress>,
    total: u64,
) -> Result<Vec<PathBuf>, LayoutError> {
    let annotations = base
        .and_then(|b| b.id.as_ref())
        .map(|id| serde_json::json!({ ANNOTATION_BASE: id.to_string() }));
    let index = index_json(&plan.entries, annotations);
    let write = |w: &mut dyn Write, shown: &Path| {
        write_tar(store, plan, &index, w, out.format, shown, progress, total)
    };
    if let Some(size) = out.split {
        let mut w = SplitWriter::new(out.path, size);
        return match write(&mut w, out.path) {
            Ok(()) => w.finish(),
            Err(e) => {
                w.abandon();
                Err(e)
            }
        };
    }
    write_partial(out.path, write)?;
    Ok(Vec::new())
}

/// The layout as a reproducible tar stream (compressed by `format`) into `out`.
#[allow(clippy::too_many_arguments)]
fn write_tar(
    store: &Store,
    plan: &Plan,
    index: &[u8],
    out: &mut dyn Write,
    format: Format,
    shown: &Path,
    progress: Option<&Progress>,
    total: u64,
) -> Result<(), LayoutError> {
    let werr = || LayoutError::io("writing", shown);
    let mut w = TarLayoutWriter::new(Compressor::new(out, format, shown)?);
    // index.json and the manifests come first, so an import knows every blob's declared
    // size before its bytes (and checks each entry's header against it); then the other
    // blobs. Each group sorted by digest, for reproducible bytes.
    w.oci_layout().map_err(werr())?;
    w.index(index).map_err(werr())?;
    let mut blobs: Vec<(bool, &Digest, u64)> = Vec::with_capacity(plan.blobs.len());
    for (d, size) in &plan.blobs {
        let manifest = store.record(d)?.is_some_and(|r| r.manifest);
        blobs.push((!manifest, d, *size));
    }
    blobs.sort();
    let algs: std::collections::BTreeSet<&str> = blobs
        .iter()
        .map(|(_, d, _)| d.algorithm().as_str())
        .collect();
    w.dirs(algs).map_err(werr())?;
    let mut done = 0;
    for (_, d, size) in blobs {
        let f = store.open_blob(d)?;
        w.blob(d, size, f).map_err(werr())?;
        done += size;
        if let Some(p) = progress {
            p(done, total);
        }
    }
    w.finish().and_then(Compressor::finish).map_err(werr())?;
    Ok(())
}
