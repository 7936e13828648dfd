//! Importing a layout directory: index.json read, each blob opened as the graph walk asks
//! for it (symlinks refused), streamed into the store.

use std::io::Read;
use std::path::Path;

use sealift_oci::{Digest, Repo};
use sealift_store::{Lease, Store};

use super::commit::finish;
use super::options::{ImportOptions, ImportReport};
use crate::dir::LayoutDir;
use crate::error::LayoutError;

pub(super) fn import_dir(
    store: &Store,
    lease: &Lease,
    dir: &Path,
    opts: &ImportOptions,
    default_repo: Option<Repo>,
) -> Result<ImportReport, LayoutError> {
    let name = dir.display().to_string();
    let layout = LayoutDir::new(dir);
    let mut report = ImportReport::default();
    if !layout.check_oci_layout()? {
        report.warnings.push(format!(
            "{name} has no oci-layout file; reading it as a layout anyway"
        ));
    }
    let index = layout.index_bytes()?;
    let total = 0;
    let progress = opts.progress.clone();
    let mut done = 0u64;
    let mut source =
        |d: &Digest, _size: u64, _mt: &str| -> Result<Option<Box<dyn Read>>, LayoutError> {
            let Some(f) = layout.open_blob(d)? else {
                return Ok(None);
            };
            done += f.metadata().map(|m| m.len()).unwrap_or(0);
            if let Some(pr) = &progress {
                pr(done, total);
            }
            Ok(Some(Box::new(f)))
        };
    finish(
        store,
        lease,
        &index,
        &name,
        opts,
        default_repo,
        &mut report,
        &mut source,
    )?;
    Ok(report)
}
