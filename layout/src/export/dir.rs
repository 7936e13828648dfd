//! Writing an export as a layout directory: blobs hard-linked from the store where the file
//! system allows, else copied (always copied from an object store); index.json merged with what the directory already lists.

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
        if layout.has_blob(d, *size) {
            present += 1;
        } else {
            let _ = fs::remove_file(&dest);
            let linked_here = match store.blob_file(d) {
                Some(src) => fs::hard_link(&src, &dest).is_ok(),
                // Blobs in an object store: no link across backends, a streamed copy.
                None => false,
            };
            if linked_here {
                linked += 1;
            } else {
                let tmp = dest.with_extension("partial");
                match store.blob_file(d) {
                    // std::fs::copy uses copy_file_range, which reflinks on file systems
                    // that support it.
                    Some(src) => {
                        fs::copy(&src, &tmp).map_err(LayoutError::io("copying to", &tmp))?;
                    }
                    None => {
                        let mut r = store.open_blob(d)?;
                        let mut f =
                            fs::File::create(&tmp).map_err(LayoutError::io("creating", &tmp))?;
                        let n = std::io::copy(&mut r, &mut f)
                            .map_err(LayoutError::io("copying to", &tmp))?;
                        if n != *size {
                            let _ = fs::remove_file(&tmp);
                            return Err(LayoutError::io("copying to", &tmp)(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("blob {d} gave {n} bytes, its record says {size}"),
                            )));
                        }
                        f.sync_all().map_err(LayoutError::io("syncing", &tmp))?;
                    }
                }
                fs::rename(&tmp, &dest).map_err(LayoutError::io("renaming", &dest))?;
                copied += 1;
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
