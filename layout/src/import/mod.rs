//! Importing an OCI image layout (directory or tarball) into the store.
//!
//! A tarball is read in one streaming pass: each `blobs/<alg>/<hex>` entry streams straight
//! into the store (hashed and verified on the way), `index.json` may come anywhere in the
//! archive. Only when the stream is done are the manifests committed, children first, and
//! only when every manifest is in are the tags set: nothing is tagged until its whole graph
//! is present.

mod commit;
mod dir;
mod options;
mod signatures;
mod tar;

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::Path;

use sealift_oci::Repo;
use sealift_store::Store;

use crate::compress::NoSeek;
use crate::error::LayoutError;
use crate::{split, Progress};

pub use options::{ImportOptions, ImportReport, ImportedImage, RefusedImage};

/// Import a layout directory or tarball (`.tar`, gzip or zstd compressed: detected from the
/// bytes, not the name), or a split bundle (its first part `NAME.000`, its `NAME.sha256`, or
/// the folder holding them: every part is checked against the checksum file first).
pub fn import_path(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport, LayoutError> {
    let meta = fs::metadata(path).map_err(LayoutError::io("reading", path))?;
    let lease = store.lease(&format!("import {}", path.display()), None)?;
    if let Some(bundle) = split::find(path)? {
        let total = bundle.verify(opts.progress.as_ref())?;
        let stem = bundle.stem();
        let reader = Counting {
            inner: NoSeek(bundle.reader()?),
            done: total,
            total: total * 2,
            progress: opts.progress.clone(),
        };
        let reopen = || -> Result<Box<dyn Read>, LayoutError> { Ok(Box::new(bundle.reader()?)) };
        return tar::import_tar(
            store,
            &lease,
            reader,
            Some(&reopen),
            &stem.display().to_string(),
            opts,
            default_repo(&stem),
        );
    }
    let default_repo = default_repo(path);
    if meta.is_dir() {
        dir::import_dir(store, &lease, path, opts, default_repo)
    } else {
        let file = File::open(path).map_err(LayoutError::io("opening", path))?;
        let total = meta.len();
        let reader = Counting {
            inner: file,
            done: 0,
            total,
            progress: opts.progress.clone(),
        };
        let reopen = || -> Result<Box<dyn Read>, LayoutError> {
            Ok(Box::new(
                File::open(path).map_err(LayoutError::io("opening", path))?,
            ))
        };
        tar::import_tar(
            store,
            &lease,
            reader,
            Some(&reopen),
            &path.display().to_string(),
            opts,
            default_repo,
        )
    }
}

/// A repository name for bare-tag ref names: the layout's file or folder name.
fn default_repo(path: &Path) -> Option<Repo> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let stem = name
        .trim_end_matches(".zst")
        .trim_end_matches(".gz")
        .trim_end_matches(".tgz")
        .trim_end_matches(".tar");
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .parse()
        .ok()
}

struct Counting<R> {
    inner: R,
    done: u64,
    total: u64,
    progress: Option<Progress>,
}

/// Bytes skipped by seeking count as done, as read ones do.
impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let before = self.inner.stream_position()?;
        let after = self.inner.seek(pos)?;
        self.done = self.done.saturating_add(after.saturating_sub(before));
        if let Some(p) = &self.progress {
            p(self.done, self.total);
        }
        Ok(after)
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(p) = &self.progress {
            p(self.done, self.total);
        }
        Ok(n)
    }
}

/// Import a tar stream (plain, gzip or zstd). `name` is used in messages.
pub fn import_reader(
    store: &Store,
    reader: impl Read,
    name: &str,
    opts: &ImportOptions,
) -> Result<ImportReport, LayoutError> {
    let lease = store.lease(&format!("import {name}"), None)?;
    tar::import_tar(store, &lease, NoSeek(reader), None, name, opts, None)
}
