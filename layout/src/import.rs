//! Importing an OCI image layout (directory or tarball) into the store.
//!
//! A tarball is read in one streaming pass: each `blobs/<alg>/<hex>` entry streams straight
//! into the store (hashed and verified on the way), `index.json` may come anywhere in the
//! archive. Only when the stream is done are the manifests committed, children first, and
//! only when every manifest is in are the tags set: nothing is tagged until its whole graph
//! is present.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use sealift_oci::manifest::{Role, MAX_DEPTH, MAX_MANIFEST_SIZE};
use sealift_oci::media_type::{self as mt};
use sealift_oci::{Descriptor, Digest, ManifestView, Repo, StoreRef, Tag};
use sealift_store::{Lease, ManifestOptions, Store};

use super::entry::{self, EntryPath};
use super::error::LayoutError;
use super::export::ANNOTATION_BASE;
use super::{split, Progress};

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// Name for an image whose index.json entry has no `org.opencontainers.image.ref.name`,
    /// or whose ref name is a bare tag (then only its repository is used).
    pub tag: Option<StoreRef>,
    /// Called with bytes read so far and the total (0 when unknown).
    pub progress: Option<Progress>,
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
}

/// What an import did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// Images from index.json.
    pub images: Vec<ImportedImage>,
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
            inner: bundle.reader()?,
            done: total,
            total: total * 2,
            progress: opts.progress.clone(),
        };
        let reopen = || -> Result<Box<dyn Read>, LayoutError> { Ok(Box::new(bundle.reader()?)) };
        return import_tar(
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
        import_dir(store, &lease, path, opts, default_repo)
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
        import_tar(
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
    import_tar(store, &lease, reader, None, name, opts, None)
}

fn decompressed<'a>(reader: impl Read + 'a, name: &str) -> Result<Box<dyn Read + 'a>, LayoutError> {
    let mut buf = BufReader::with_capacity(1 << 20, reader);
    let head = buf.fill_buf().map_err(|source| LayoutError::Tar {
        path: name.to_string(),
        source,
    })?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buf))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buf).map_err(|source| LayoutError::Tar {
                path: name.to_string(),
                source,
            })?,
        )
    } else {
        Box::new(buf)
    })
}

/// Reopens a tarball from its start, for a second pass.
type Reopen<'a> = dyn Fn() -> Result<Box<dyn Read>, LayoutError> + 'a;

/// The sizes a layout declares for its blobs, from index.json and the manifests read so
/// far, and who declares each: a blob entry's tar header is checked against them before
/// any of its bytes are written (a hostile header claiming 8 GiB of a zero stream that
/// compresses to almost nothing would otherwise fill `ingest/` before the digest check).
#[derive(Default)]
struct Declared(std::collections::HashMap<Digest, (u64, String)>);

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
    height: std::collections::HashMap<Digest, (usize, Digest)>,
    /// Per manifest: the manifests met so far that list it as an entry.
    parents: std::collections::HashMap<Digest, Vec<Digest>>,
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

/// A tar entry's kind, name for messages and size, after the checks every entry gets; `None`
/// for entries that carry nothing (directories, extension headers).
fn classify_entry<R: Read>(
    e: &tar::Entry<'_, R>,
    name: &str,
) -> Result<Option<(EntryPath, String, u64)>, LayoutError> {
    let raw = e.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let et = e.header().entry_type();
    if et.is_symlink() || et.is_hard_link() {
        return Err(LayoutError::UnsafeEntry {
            entry: shown,
            reason: "symlinks and hard links are refused".into(),
        });
    }
    let kind = entry::classify(&raw).map_err(|r| LayoutError::UnsafeEntry {
        entry: shown.clone(),
        reason: r.to_string(),
    })?;
    if et.is_dir()
        || et.is_pax_global_extensions()
        || et.is_pax_local_extensions()
        || et.is_gnu_longname()
    {
        return Ok(None);
    }
    if !(et.is_file() || et.is_contiguous()) {
        return Err(LayoutError::UnsafeEntry {
            entry: shown,
            reason: format!("entry type {:?} is not a regular file", et),
        });
    }
    let size = e.header().size().map_err(|source| LayoutError::Tar {
        path: name.to_string(),
        source,
    })?;
    Ok(Some((kind, shown, size)))
}

/// One pass over the tar stream, then the graph committed. Blob entries whose size no
/// descriptor read so far declares and that are too large to be a manifest wait, when the
/// tarball can be read again (`reopen`), for a second pass after index.json and every
/// manifest are known; then only declared ones, at their declared size, are written.
#[allow(clippy::too_many_arguments)]
fn import_tar(
    store: &Store,
    lease: &Lease,
    reader: impl Read,
    reopen: Option<&Reopen<'_>>,
    name: &str,
    opts: &ImportOptions,
    default_repo: Option<Repo>,
) -> Result<ImportReport, LayoutError> {
    let tar_err = |source| LayoutError::Tar {
        path: name.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(decompressed(reader, name)?);
    let mut report = ImportReport::default();
    let mut index: Option<Vec<u8>> = None;
    let mut layout_prefix: Option<String> = None;
    let mut declared = Declared::default();
    let mut chains = Chains::default();
    let mut deferred: Vec<(Digest, u64, String)> = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let mut e = entry.map_err(tar_err)?;
        let Some((kind, shown, size)) = classify_entry(&e, name)? else {
            continue;
        };
        match kind {
            EntryPath::Ignored => continue,
            EntryPath::IndexJson | EntryPath::OciLayout => {
                let raw = e.path_bytes().into_owned();
                let p = entry::prefix(&raw);
                match &layout_prefix {
                    Some(q) if q != &p => return Err(LayoutError::TwoLayouts(q.clone(), p)),
                    _ => layout_prefix = Some(p),
                }
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
                    let outcome = put_entry(store, lease, &d, size, &mut &buf[..], &shown)?;
                    count(&mut report, &d, outcome, size);
                    if buf.trim_ascii_start().starts_with(b"{") {
                        // Only verified bytes declare anything: the store's, when it had them.
                        if outcome == sealift_store::PutOutcome::Present {
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
                    let outcome = put_entry(store, lease, &d, size, &mut e, &shown)?;
                    count(&mut report, &d, outcome, size);
                }
            }
        }
    }
    if let (Some(reopen), false) = (reopen, deferred.is_empty()) {
        second_pass(store, lease, reopen, name, &declared, deferred, &mut report)?;
    }
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

fn count(report: &mut ImportReport, d: &Digest, outcome: sealift_store::PutOutcome, size: u64) {
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

fn put_entry(
    store: &Store,
    lease: &Lease,
    d: &Digest,
    size: u64,
    r: &mut dyn Read,
    shown: &str,
) -> Result<sealift_store::PutOutcome, LayoutError> {
    store
        .put_blob(lease, d, size, "", r)
        .map_err(|source| LayoutError::Blob {
            entry: shown.to_string(),
            source,
        })
}

/// Write the deferred blob entries that some descriptor declares (at the size it declares),
/// reading the tarball again; an entry no descriptor names is never written.
fn second_pass(
    store: &Store,
    lease: &Lease,
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
    let mut need = std::collections::HashMap::new();
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
    let mut archive = tar::Archive::new(decompressed(reopen()?, name)?);
    for entry in archive.entries().map_err(tar_err)? {
        let mut e = entry.map_err(tar_err)?;
        let Some((EntryPath::Blob(d), shown, size)) = classify_entry(&e, name)? else {
            continue;
        };
        if need.get(&d) != Some(&size) {
            continue;
        }
        need.remove(&d);
        let outcome = put_entry(store, lease, &d, size, &mut e, &shown)?;
        count(report, &d, outcome, size);
        if need.is_empty() {
            break;
        }
    }
    // Anything still needed (the file changed between passes) is named by check_complete.
    Ok(())
}

fn read_bounded(r: &mut impl Read, size: u64, what: &str) -> io::Result<Vec<u8>> {
    if size > MAX_MANIFEST_SIZE as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is {size} bytes, over the 4 MiB limit"),
        ));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(MAX_MANIFEST_SIZE as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

fn check_layout_version(bytes: &[u8], path: &str) -> Result<(), LayoutError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| LayoutError::BadLayoutFile {
            path: path.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(s) if s.starts_with("1.") => Ok(()),
        other => Err(LayoutError::BadLayoutFile {
            path: path.to_string(),
            reason: format!("unsupported imageLayoutVersion {other:?} (expected 1.x)"),
        }),
    }
}

type BlobSource<'a> =
    dyn FnMut(&Digest, u64, &str) -> Result<Option<Box<dyn Read>>, LayoutError> + 'a;

fn import_dir(
    store: &Store,
    lease: &Lease,
    dir: &Path,
    opts: &ImportOptions,
    default_repo: Option<Repo>,
) -> Result<ImportReport, LayoutError> {
    let name = dir.display().to_string();
    let layout = dir.join("oci-layout");
    let mut report = ImportReport::default();
    match fs::read(&layout) {
        Ok(b) => check_layout_version(&b, &layout.display().to_string())?,
        Err(_) => report.warnings.push(format!(
            "{name} has no oci-layout file; reading it as a layout anyway"
        )),
    }
    let index_path = dir.join("index.json");
    let index = match fs::symlink_metadata(&index_path) {
        Ok(m) if m.is_file() => {
            fs::read(&index_path).map_err(LayoutError::io("reading", &index_path))?
        }
        Ok(_) => {
            return Err(LayoutError::UnsafeFile {
                path: index_path.display().to_string(),
                reason: "not a regular file".into(),
            })
        }
        Err(_) => return Err(LayoutError::MissingIndex(name)),
    };
    let total = 0;
    let progress = opts.progress.clone();
    let mut done = 0u64;
    let mut source =
        |d: &Digest, _size: u64, _mt: &str| -> Result<Option<Box<dyn Read>>, LayoutError> {
            let p = dir.join("blobs").join(d.algorithm().as_str()).join(d.hex());
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => Err(LayoutError::UnsafeFile {
                    path: p.display().to_string(),
                    reason: "symlinks are refused".into(),
                }),
                Ok(m) if m.is_file() => {
                    done += m.len();
                    if let Some(pr) = &progress {
                        pr(done, total);
                    }
                    Ok(Some(Box::new(
                        File::open(&p).map_err(LayoutError::io("opening", &p))?,
                    )))
                }
                _ => Ok(None),
            }
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

/// index.json's name for messages, and its parse.
fn parse_index(index: &[u8], name: &str) -> Result<(String, ManifestView), LayoutError> {
    let index_name = format!("{name}/index.json");
    let view = ManifestView::parse(index, Some(mt::OCI_INDEX)).map_err(|e| {
        LayoutError::BadLayoutFile {
            path: index_name.clone(),
            reason: e.to_string(),
        }
    })?;
    Ok((index_name, view))
}

/// Before anything is committed as a manifest or tagged: every blob the images need must be
/// in the store by now (a tarball's blobs were streamed in; a delta bundle counts on the
/// site's store for the rest). Names every missing digest and the images needing it.
fn check_complete(store: &Store, index: &[u8], name: &str) -> Result<(), LayoutError> {
    let (_, view) = parse_index(index, name)?;
    let mut missing: std::collections::BTreeMap<Digest, Vec<String>> = Default::default();
    for desc in &view.manifests {
        let image = desc
            .ref_name()
            .map(str::to_string)
            .unwrap_or_else(|| desc.digest.to_string());
        let mut stack = vec![(desc.clone(), 1)];
        let mut seen = HashSet::new();
        while let Some((d, depth)) = stack.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            if depth > MAX_DEPTH && mt::is_manifest(&d.media_type) {
                return Err(too_deep(&image, &desc.digest, d.digest, depth));
            }
            if store.record(&d.digest)?.is_none() {
                let who = missing.entry(d.digest.clone()).or_default();
                if !who.contains(&image) {
                    who.push(image.clone());
                }
                continue;
            }
            if !mt::is_manifest(&d.media_type) || d.size > MAX_MANIFEST_SIZE as u64 {
                continue;
            }
            let bytes = store.read_small(&d.digest, MAX_MANIFEST_SIZE as u64)?;
            // A manifest that does not parse is reported, with its digest, when committed.
            let Ok(v) = ManifestView::parse(&bytes, Some(&d.media_type)) else {
                continue;
            };
            stack.extend(
                v.children()
                    .into_iter()
                    .filter(|c| c.required)
                    .map(|c| (c.descriptor.clone(), depth + 1)),
            );
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let base = view
        .annotations
        .get(ANNOTATION_BASE)
        .and_then(|b| b.parse().ok());
    Err(LayoutError::Incomplete {
        bundle: name.to_string(),
        base,
        missing: missing.into_iter().collect(),
    })
}

/// Commit the graph named by index.json, children first, then set tags.
#[allow(clippy::too_many_arguments)]
fn finish(
    store: &Store,
    lease: &Lease,
    index: &[u8],
    name: &str,
    opts: &ImportOptions,
    default_repo: Option<Repo>,
    report: &mut ImportReport,
    source: &mut BlobSource<'_>,
) -> Result<(), LayoutError> {
    let (index_name, view) = parse_index(index, name)?;
    let mut done = HashSet::new();
    let mut imported = Vec::new();
    for desc in &view.manifests {
        if !mt::is_manifest(&desc.media_type) {
            report.warnings.push(format!(
                "{index_name}: entry {} has media type {}, not an image; stored but not tagged",
                desc.digest, desc.media_type
            ));
            put_blob(store, lease, desc, &index_name, source, report, true)?;
            continue;
        }
        let image = desc
            .ref_name()
            .map(str::to_string)
            .unwrap_or_else(|| desc.digest.to_string());
        put_node(
            store,
            lease,
            desc,
            &image,
            &index_name,
            source,
            report,
            &mut done,
        )?;
        imported.push(desc);
    }

    // Name every image before tagging any, so a naming error leaves no tag behind.
    // Referrers (manifests with a subject) live through their subject and never take --tag.
    let mut referrers = HashSet::new();
    for d in &imported {
        if store
            .record(&d.digest)?
            .is_some_and(|r| r.subject.is_some())
        {
            referrers.insert(d.digest.clone());
        }
    }
    let untagged = imported
        .iter()
        .filter(|d| d.ref_name().is_none() && !referrers.contains(&d.digest))
        .count();
    let mut plan: Vec<(&Descriptor, Option<(Repo, Tag)>)> = Vec::new();
    for desc in imported {
        let target = match desc.ref_name() {
            Some(n) => Some(name_from_ref(n, opts, default_repo.as_ref(), &index_name)?),
            None if referrers.contains(&desc.digest) => None,
            None => match &opts.tag {
                Some(t) if untagged == 1 => Some((
                    t.repo.clone(),
                    t.tag
                        .clone()
                        .ok_or_else(|| LayoutError::Naming(format!("--tag {t} needs a tag")))?,
                )),
                Some(t) => {
                    return Err(LayoutError::Naming(format!(
                    "--tag {t} is ambiguous: {index_name} has {untagged} images without a ref name"
                )))
                }
                // Referrers (and other unnamed entries) are kept by their subject or by a pin.
                None => None,
            },
        };
        plan.push((desc, target));
    }
    for (desc, target) in plan {
        let reference = match target {
            Some((repo, tag)) => {
                // Importing the same bundle again changes nothing, not even tag times.
                let current = store.resolve(&StoreRef::tagged(repo.clone(), tag.clone()));
                if current.ok().as_ref() != Some(&desc.digest) {
                    store.set_tag(&repo, &tag, &desc.digest)?;
                }
                Some(format!("{repo}:{tag}"))
            }
            None => {
                if !referrers.contains(&desc.digest) {
                    store.pin(&desc.digest)?;
                    report.warnings.push(format!(
                        "{}: no ref name in {index_name}; pinned by digest (pass --tag REPO:TAG to name it)",
                        desc.digest
                    ));
                }
                None
            }
        };
        report.images.push(ImportedImage {
            reference,
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
        });
    }
    Ok(())
}

/// Turn a ref name into repo and tag: `repo:tag` as is, a bare `tag` under `--tag`'s
/// repository or the layout's file name.
fn name_from_ref(
    n: &str,
    opts: &ImportOptions,
    default_repo: Option<&Repo>,
    index_name: &str,
) -> Result<(Repo, Tag), LayoutError> {
    let last = n.rsplit('/').next().unwrap_or(n);
    if last.contains(':') && !n.contains('@') {
        let r: StoreRef = n.parse().map_err(|e| {
            LayoutError::Naming(format!(
                "{index_name}: ref name {n:?} is not a valid repo:tag: {e}"
            ))
        })?;
        if let Some(tag) = r.tag {
            return Ok((r.repo, tag));
        }
    }
    let tag: Tag = n.parse().map_err(|e| {
        LayoutError::Naming(format!(
            "{index_name}: ref name {n:?} is neither repo:tag nor a tag: {e}"
        ))
    })?;
    let repo = opts
        .tag
        .as_ref()
        .map(|t| t.repo.clone())
        .or_else(|| default_repo.cloned())
        .ok_or_else(|| {
            LayoutError::Naming(format!(
                "{index_name}: ref name {n:?} is a bare tag; pass --tag REPO:TAG to choose the repository"
            ))
        })?;
    Ok((repo, tag))
}

fn put_blob(
    store: &Store,
    lease: &Lease,
    desc: &Descriptor,
    needed_by: &str,
    source: &mut BlobSource<'_>,
    report: &mut ImportReport,
    required: bool,
) -> Result<bool, LayoutError> {
    // Ask the source first even when the store has the blob: a directory layout's symlinks
    // are refused whether or not their bytes would be needed.
    let reader = source(&desc.digest, desc.size, &desc.media_type)?;
    if store.hold(lease, &desc.digest)?.is_some() {
        count(
            report,
            &desc.digest,
            sealift_store::PutOutcome::Present,
            desc.size,
        );
        return Ok(true);
    }
    match reader {
        Some(mut r) => {
            let outcome = store
                .put_blob(lease, &desc.digest, desc.size, &desc.media_type, &mut r)
                .map_err(|e| LayoutError::Blob {
                    entry: format!(
                        "blobs/{}/{}",
                        desc.digest.algorithm().as_str(),
                        desc.digest.hex()
                    ),
                    source: e,
                })?;
            count(report, &desc.digest, outcome, desc.size);
            Ok(true)
        }
        None if !required => Ok(false),
        None => Err(LayoutError::MissingBlob {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            needed_by: needed_by.to_string(),
        }),
    }
}

fn too_deep(image: &str, root: &Digest, at: Digest, depth: usize) -> LayoutError {
    LayoutError::Blob {
        entry: format!("image {image}"),
        source: sealift_store::Error::TooDeep {
            root: root.clone(),
            at,
            depth,
        },
    }
}

/// Store the manifest `desc` (of the image `image`) and everything under it, each manifest
/// committed after its children. An explicit stack, not recursion: a hostile chain thousands
/// deep must be refused past [`MAX_DEPTH`], before its bytes are read, not overflow ours.
#[allow(clippy::too_many_arguments)]
fn put_node(
    store: &Store,
    lease: &Lease,
    desc: &Descriptor,
    image: &str,
    needed_by: &str,
    source: &mut BlobSource<'_>,
    report: &mut ImportReport,
    done: &mut HashSet<Digest>,
) -> Result<(), LayoutError> {
    enum Step {
        Visit(Descriptor, String, usize),
        Commit(Descriptor, Vec<u8>),
    }
    let root = desc.digest.clone();
    let mut steps = vec![Step::Visit(desc.clone(), needed_by.to_string(), 1)];
    while let Some(step) = steps.pop() {
        let (desc, needed_by, depth) = match step {
            Step::Commit(desc, bytes) => {
                store.put_manifest(
                    lease,
                    &bytes,
                    ManifestOptions {
                        expected: Some(&desc.digest),
                        media_type: Some(&desc.media_type),
                        sparse: false,
                    },
                )?;
                continue;
            }
            Step::Visit(desc, needed_by, depth) => (desc, needed_by, depth),
        };
        if !done.insert(desc.digest.clone()) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(too_deep(image, &root, desc.digest, depth));
        }
        if desc.size > MAX_MANIFEST_SIZE as u64 {
            return Err(LayoutError::Store(sealift_store::Error::Manifest {
                digest: desc.digest.clone(),
                source: sealift_oci::manifest::ManifestError::TooLarge(desc.size as usize),
            }));
        }
        put_blob(store, lease, &desc, &needed_by, source, report, true)?;
        let bytes = store.read_small(&desc.digest, MAX_MANIFEST_SIZE as u64)?;
        let view = ManifestView::parse(&bytes, Some(&desc.media_type)).map_err(|source| {
            sealift_store::Error::Manifest {
                digest: desc.digest.clone(),
                source,
            }
        })?;
        let me = desc.digest.to_string();
        let mut entries = Vec::new();
        for child in view.children() {
            if child.role == Role::Manifest {
                entries.push(Step::Visit(child.descriptor.clone(), me.clone(), depth + 1));
            } else {
                put_blob(
                    store,
                    lease,
                    child.descriptor,
                    &me,
                    source,
                    report,
                    child.required,
                )?;
            }
        }
        for w in &view.warnings {
            report.warnings.push(format!("{me}: {w}"));
        }
        // Pushed before its entries, so committed after all of them; the first entry is
        // walked first.
        steps.push(Step::Commit(desc, bytes));
        steps.extend(entries.into_iter().rev());
    }
    Ok(())
}
