//! Importing a layout tarball: one streaming pass, each blob entry straight into the store,
//! sizes checked against what the layout declares before any bytes are written; a second
//! pass only for large entries met before anything declared them.

use std::collections::HashMap;
use std::io::{Read, Seek};

use sealift_oci::manifest::{Role, MAX_DEPTH, MAX_MANIFEST_SIZE};
use sealift_oci::media_type as mt;
use sealift_oci::{Digest, ManifestView, Repo};
use sealift_store::{IngestBatch, Lease, Store};

use super::commit::{check_complete, finish};
use super::options::{count, ImportOptions, ImportReport};
use crate::compress::Decompressed;
use crate::entry::EntryPath;
use crate::error::LayoutError;
use crate::format::{check_layout_version, read_bounded};
use crate::tar_read::{check_entry, same_layout};

/// Reopens a tarball from its start, for a second pass.
pub(super) type Reopen<'a> = dyn Fn() -> Result<Box<dyn Read>, LayoutError> + 'a;

/// The sizes a layout declares for its blobs, from index.json and the manifests read so
/// far, and who declares each: a blob entry's tar header is checked against them before
/// any of its bytes are written (a hostile header claiming 8 GiB of a zero stream that
/// compresses to almost nothing would otherwise fill `ingest/` before the digest check).
#[derive(Default)]
struct Declared(HashMap<Digest, (u64, String)>);

impl Declared {
    fn add(&mut self, by: &str, view: &ManifestView) {
        for c in view.children() {
            self.0
                .entry(c.descriptor.digest.clone())
                .or_insert_with(|| (c.descriptor.size, by.to_string()));
        }
    }

    /// Whether `d` is declared, refusing a header size other than the declared one.
    fn check(&self, entry: &str, d: &Digest, size: u64) -> Result<bool, LayoutError> {
        match self.0.get(d) {
            Some((declared, by)) if *declared != size => Err(LayoutError::EntrySize {
                entry: entry.to_string(),
                size,
                declared: *declared,
                by: by.clone(),
            }),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }
}

/// How deep the manifests met so far nest, kept as they stream by (in any order), so a
/// hostile chain is refused once [`MAX_DEPTH`] manifests of it have arrived rather than after
/// thousands have been written.
#[derive(Default)]
struct Chains {
    /// Per manifest: the longest chain of manifests met so far that it heads (itself
    /// included), and the manifest at that chain's bottom.
    height: HashMap<Digest, (usize, Digest)>,
    /// Per manifest: the manifests met so far that list it as an entry.
    parents: HashMap<Digest, Vec<Digest>>,
}

impl Chains {
    fn add(&mut self, d: &Digest, view: &ManifestView, entry: &str) -> Result<(), LayoutError> {
        let mut best = (1, d.clone());
        for c in view.children() {
            if c.role != Role::Manifest {
                continue;
            }
            let child = &c.descriptor.digest;
            self.parents
                .entry(child.clone())
                .or_default()
                .push(d.clone());
            if let Some((h, bottom)) = self.height.get(child) {
                if h + 1 > best.0 {
                    best = (h + 1, bottom.clone());
                }
            }
        }
        self.set(d, best, entry)?;
        // Raise what already lists it; each raise past the limit is refused at once, so no
        // walk up goes further than MAX_DEPTH.
        let mut todo = vec![d.clone()];
        while let Some(x) = todo.pop() {
            let (h, bottom) = self.height[&x].clone();
            for p in self.parents.get(&x).cloned().unwrap_or_default() {
                if self.height.get(&p).is_some_and(|(hp, _)| *hp < h + 1) {
                    self.set(&p, (h + 1, bottom.clone()), entry)?;
                    todo.push(p);
                }
            }
        }
        Ok(())
    }

    /// `entry`: the tar entry that made `d`'s chain this long.
    fn set(
        &mut self,
        d: &Digest,
        (h, bottom): (usize, Digest),
        entry: &str,
    ) -> Result<(), LayoutError> {
        if h > MAX_DEPTH {
            return Err(LayoutError::Blob {
                entry: entry.to_string(),
                source: sealift_store::Error::TooDeep {
                    root: d.clone(),
                    at: bottom,
                    depth: h,
                },
            });
        }
        self.height.insert(d.clone(), (h, bottom));
        Ok(())
    }
}

/// One pass over the tar stream, then the graph committed. Blob entries whose size no
/// descriptor read so far declares and that are too large to be a manifest wait, when the
/// tarball can be read again (`reopen`), for a second pass after index.json and every
/// manifest are known; then only declared ones, at their declared size, are written.
#[allow(clippy::too_many_arguments)]
pub(super) fn import_tar(
    store: &Store,
    lease: &Lease,
    mut reader: impl Read + Seek,
    reopen: Option<&Reopen<'_>>,
    name: &str,
    opts: &ImportOptions,
    default_repo: Option<Repo>,
) -> Result<ImportReport, LayoutError> {
    let tar_err = |source| LayoutError::Tar {
        path: name.to_string(),
        source,
    };
    // A plain tarball file is passed through by seeking over the entries this pass leaves
    // (large blobs no descriptor has declared yet wait for the second pass): a tarball
    // whose manifests come after its layers is then not read twice.
    let seekable = reader.stream_position().is_ok();
    let source = Decompressed::new(reader, name)?;
    let seek = seekable && !source.is_compressed();
    let mut archive = tar::Archive::new(source);
    let entries = if seek {
        archive.entries_with_seek()
    } else {
        archive.entries()
    };
    let mut report = ImportReport::default();
    let mut index: Option<Vec<u8>> = None;
    let mut layout_prefix: Option<String> = None;
    let mut declared = Declared::default();
    let mut chains = Chains::default();
    let mut deferred: Vec<(Digest, u64, String)> = Vec::new();
    // Blobs commit a batch at a time (group commit), all of them before the graph is.
    let mut batch = store.batch(lease);
    for entry in entries.map_err(tar_err)? {
        let mut e = entry.map_err(tar_err)?;
        let Some((kind, shown, size)) = check_entry(&e, name)? else {
            continue;
        };
        match kind {
            EntryPath::Ignored => continue,
            EntryPath::IndexJson | EntryPath::OciLayout => {
                same_layout(&mut layout_prefix, &e.path_bytes())?;
                let bytes = read_bounded(&mut e, size, &shown).map_err(tar_err)?;
                if kind == EntryPath::OciLayout {
                    check_layout_version(&bytes, &shown)?;
                } else {
                    // A bad index.json is reported once the stream is done.
                    if let Ok(v) = ManifestView::parse(&bytes, Some(mt::OCI_INDEX)) {
                        declared.add(&shown, &v);
                    }
                    // A later duplicate wins, as tar extraction would have it.
                    index = Some(bytes);
                }
            }
            EntryPath::Blob(d) => {
                let known = declared.check(&shown, &d, size)?;
                if size <= MAX_MANIFEST_SIZE as u64 {
                    // Small enough to be a manifest: kept in memory, so that one declares
                    // the sizes of what it names before their entries come.
                    let mut buf = Vec::with_capacity(size as usize);
                    (&mut e).take(size).read_to_end(&mut buf).map_err(tar_err)?;
                    let outcome = put_entry(&mut batch, &d, size, &mut &buf[..], &shown)?;
                    count(&mut report, &d, outcome, size);
                    if buf.trim_ascii_start().starts_with(b"{") {
                        // Only verified bytes declare anything: these, once hashed, when
                        // the store or the batch had the digest and did not read them.
                        if outcome == sealift_store::PutOutcome::Present
                            && Digest::of(d.algorithm(), &buf) != d
                        {
                            batch.flush()?;
                            buf = store.read_small(&d, MAX_MANIFEST_SIZE as u64)?;
                        }
                        if let Ok(v) = ManifestView::parse(&buf, None) {
                            declared.add(&format!("manifest {d}"), &v);
                            chains.add(&d, &v, &shown)?;
                        }
                    }
                } else if !known && reopen.is_some() {
                    deferred.push((d, size, shown));
                } else {
                    let outcome = put_entry(&mut batch, &d, size, &mut e, &shown)?;
                    count(&mut report, &d, outcome, size);
                }
            }
        }
    }
    if let (Some(reopen), false) = (reopen, deferred.is_empty()) {
        second_pass(&mut batch, reopen, name, &declared, deferred, &mut report)?;
    }
    batch.finish()?;
    let index = index.ok_or_else(|| LayoutError::MissingIndex(name.to_string()))?;
    check_complete(store, &index, name)?;
    let mut source =
        |d: &Digest, _size: u64, _mt: &str| -> Result<Option<Box<dyn Read>>, LayoutError> {
            // Every blob in the tar is already in the store; nothing more can arrive.
            let _ = d;
            Ok(None)
        };
    finish(
        store,
        lease,
        &index,
        name,
        opts,
        default_repo,
        &mut report,
        &mut source,
    )?;
    Ok(report)
}

fn put_entry(
    batch: &mut IngestBatch<'_>,
    d: &Digest,
    size: u64,
    r: &mut dyn Read,
    shown: &str,
) -> Result<sealift_store::PutOutcome, LayoutError> {
    batch
        .put_blob(d, size, "", r)
        .map_err(|source| LayoutError::Blob {
            entry: shown.to_string(),
            source,
        })
}

/// Write the deferred blob entries that some descriptor declares (at the size it declares),
/// reading the tarball again; an entry no descriptor names is never written.
fn second_pass(
    batch: &mut IngestBatch<'_>,
    reopen: &Reopen<'_>,
    name: &str,
    declared: &Declared,
    deferred: Vec<(Digest, u64, String)>,
    report: &mut ImportReport,
) -> Result<(), LayoutError> {
    let tar_err = |source| LayoutError::Tar {
        path: name.to_string(),
        source,
    };
    let mut need = HashMap::new();
    for (d, size, shown) in deferred {
        if declared.check(&shown, &d, size)? {
            need.insert(d, size);
        } else {
            report.warnings.push(format!(
                "{shown}: no manifest in {name} names this blob; not imported"
            ));
        }
    }
    if need.is_empty() {
        return Ok(());
    }
    let mut archive = tar::Archive::new(Decompressed::new(reopen()?, name)?);
    for entry in archive.entries().map_err(tar_err)? {
        let mut e = entry.map_err(tar_err)?;
        let Some((EntryPath::Blob(d), shown, size)) = check_entry(&e, name)? else {
            continue;
        };
        if need.get(&d) != Some(&size) {
            continue;
        }
        need.remove(&d);
        let outcome = put_entry(batch, &d, size, &mut e, &shown)?;
        count(report, &d, outcome, size);
        if need.is_empty() {
            break;
        }
    }
    // Anything still needed (the file changed between passes) is named by check_complete.
    Ok(())
}
