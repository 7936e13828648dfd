//! Writing an export as a layout directory: blobs hard-linked from the store where the file
//! system allows, else copied; index.json merged with what the directory already lists.

use std::fs;
use std::path::Path;

use sealift_store::Store;

use super::plan::Plan;
use crate::dir::LayoutDir;
use crate::error::LayoutError;
use crate::Progress;

/// Write `plan` into `dir`; `total` bytes for progress. Returns how many blobs were linked,
/// copied and already present.
pub(super) fn export_dir(
    store: &Store,
    plan: &Plan,
    dir: &Path,
    progress: Option<&Progress>,
    total: u64,
) -> Result<(usize, usize, usize), LayoutError> {
    let layout = LayoutDir::create(dir)?;
    let (mut linked, mut copied, mut present) = (0, 0, 0);
    let mut done = 0u64;
    for (d, size) in &plan.blobs {
        let dest = layout.blob_path(d);
        let src = store.blob_path(d);
        if layout.has_blob(d, *size) {
            present += 1;
        } else {
            let _ = fs::remove_file(&dest);
            match fs::hard_link(&src, &dest) {
                Ok(()) => linked += 1,
                Err(_) => {
                    // std::fs::copy uses copy_file_range, which reflinks on file
                    // systems that support it.
                    let tmp = dest.with_extension("partial");
                    fs::copy(&src, &tmp).map_err(LayoutError::io("copying to", &tmp))?;
                    fs::rename(&tmp, &dest).map_err(LayoutError::io("renaming", &dest))?;
                    copied += 1;
                }
            }
        }
        done += size;
        if let Some(p) = progress {
            p(done, total);
        }
    }
    layout.merge_index(&plan.entries)?;
    Ok((linked, copied, present))
}
