//! Exporting images from the store as an OCI image layout: a directory (blobs hard-linked
//! from the store where the file system allows, else copied) or a reproducible tarball.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sealift_oci::media_type as mt;
use sealift_oci::{Digest, StoreRef};
use sealift_store::Store;

use super::error::LayoutError;
use super::inventory::Inventory;
use super::split::SplitWriter;
use super::Progress;

/// index.json annotation of a delta bundle: the id (sha256) of the inventory it was made
/// against. Its blobs that inventory lists are left out.
pub const ANNOTATION_BASE: &str = "io.sealift.bundle.base";

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

/// Output kind, from the path's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A directory.
    Dir,
    /// `.tar`
    Tar,
    /// `.tar.gz` / `.tgz`
    TarGz,
    /// `.tar.zst`
    TarZst,
}

impl Format {
    /// Tarball when the name ends in .tar, .tar.gz, .tgz or .tar.zst; else a directory.
    pub fn from_path(p: &Path) -> Format {
        let n = p.to_string_lossy();
        if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Format::TarGz
        } else if n.ends_with(".tar.zst") {
            Format::TarZst
        } else if n.ends_with(".tar") {
            Format::Tar
        } else {
            Format::Dir
        }
    }
}

struct Plan {
    /// index.json entries: descriptor JSON.
    entries: Vec<serde_json::Value>,
    /// Every blob to write, in a stable order.
    blobs: Vec<(Digest, u64)>,
    images: Vec<(String, Digest)>,
    /// Blobs left out of a delta, and their bytes.
    omitted: (usize, u64),
}

fn plan(store: &Store, refs: &[StoreRef], opts: &ExportOptions) -> Result<Plan, LayoutError> {
    let mut entries = Vec::new();
    let mut images = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut blobs = Vec::new();
    let mut listed: HashSet<Digest> = HashSet::new();
    let mut omitted = (0, 0);
    for r in refs {
        let d = store.resolve(r)?;
        let name = r.to_string();
        let mut roots = vec![(d.clone(), Some(name.clone()))];
        let mut i = 0;
        while i < roots.len() {
            let (root, ref_name) = roots[i].clone();
            i += 1;
            let (nodes, missing) = store.walk(&root)?;
            if let Some((parent, child)) = missing.into_iter().next() {
                return Err(LayoutError::MissingBlob {
                    digest: child,
                    media_type: String::new(),
                    needed_by: format!("{parent} (image {name} is broken; run sealift verify)"),
                });
            }
            for (nd, rec) in &nodes {
                if seen.insert(nd.clone()) {
                    let at_site = opts
                        .base
                        .as_ref()
                        .is_some_and(|b| !rec.manifest && b.digests.contains(nd));
                    if at_site {
                        omitted.0 += 1;
                        omitted.1 += rec.size;
                    } else {
                        blobs.push((nd.clone(), rec.size));
                    }
                }
                if opts.referrers && rec.manifest {
                    let mut refs = store.referrers(nd)?;
                    refs.sort();
                    for rd in refs {
                        if !roots.iter().any(|(x, _)| x == &rd) {
                            roots.push((rd, None));
                        }
                    }
                }
            }
            let rec = store
                .record(&root)?
                .ok_or_else(|| sealift_store::Error::NotFound(root.clone()))?;
            let mut entry = serde_json::json!({
                "mediaType": rec.media_type,
                "digest": root.to_string(),
                "size": rec.size,
            });
            if let Some(a) = &rec.artifact_type {
                if rec.subject.is_some() {
                    entry["artifactType"] = serde_json::Value::String(a.clone());
                }
            }
            if let Some(n) = &ref_name {
                entry["annotations"] = serde_json::json!({ mt::ANNOTATION_REF_NAME: n });
                images.push((n.clone(), root.clone()));
            }
            if ref_name.is_some() || listed.insert(root.clone()) {
                entries.push(entry);
            }
        }
    }
    Ok(Plan {
        entries,
        blobs,
        images,
        omitted,
    })
}

/// The bytes of an `index.json` listing `entries` (descriptors with their annotations).
pub fn index_json(entries: &[serde_json::Value]) -> Vec<u8> {
    index_json_annotated(entries, None)
}

fn index_json_annotated(
    entries: &[serde_json::Value],
    annotations: Option<serde_json::Value>,
) -> Vec<u8> {
    let mut v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": entries,
    });
    if let Some(a) = annotations {
        v["annotations"] = a;
    }
    // Serialising a Value cannot fail.
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The bytes of the `oci-layout` file sealift writes.
pub const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

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
    let plan = plan(store, refs, opts)?;
    let mut report = ExportReport {
        images: plan.images.clone(),
        blobs: plan.blobs.len(),
        bytes: plan.blobs.iter().map(|b| b.1).sum(),
        omitted: plan.omitted.0,
        omitted_bytes: plan.omitted.1,
        ..Default::default()
    };
    match format {
        Format::Dir => export_dir(store, &plan, path, opts, &mut report)?,
        f => report.parts = export_tar(store, &plan, path, f, opts, &report)?,
    }
    Ok(report)
}

fn export_dir(
    store: &Store,
    plan: &Plan,
    dir: &Path,
    opts: &ExportOptions,
    report: &mut ExportReport,
) -> Result<(), LayoutError> {
    for alg in ["sha256", "sha512"] {
        let p = dir.join("blobs").join(alg);
        fs::create_dir_all(&p).map_err(LayoutError::io("creating", &p))?;
    }
    let total = report.bytes;
    let mut done = 0u64;
    for (d, size) in &plan.blobs {
        let dest = dir.join("blobs").join(d.algorithm().as_str()).join(d.hex());
        let src = store.blob_path(d);
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_file() && m.len() == *size => {
                report.present += 1;
            }
            _ => {
                let _ = fs::remove_file(&dest);
                match fs::hard_link(&src, &dest) {
                    Ok(()) => report.linked += 1,
                    Err(_) => {
                        // std::fs::copy uses copy_file_range, which reflinks on file
                        // systems that support it.
                        let tmp = dest.with_extension("partial");
                        fs::copy(&src, &tmp).map_err(LayoutError::io("copying to", &tmp))?;
                        fs::rename(&tmp, &dest).map_err(LayoutError::io("renaming", &dest))?;
                        report.copied += 1;
                    }
                }
            }
        }
        done += size;
        if let Some(p) = &opts.progress {
            p(done, total);
        }
    }
    merge_index(dir, &plan.entries)
}

/// Write `new` into `dir`'s index.json, replacing entries with the same ref name (or, for
/// unnamed entries, the same digest), and write oci-layout. Both atomically.
pub fn merge_index(dir: &Path, new: &[serde_json::Value]) -> Result<(), LayoutError> {
    // Merge with an existing layout: entries with the same ref name are replaced.
    let index_path = dir.join("index.json");
    let mut entries: Vec<serde_json::Value> = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
            .ok()
            .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
            .ok_or_else(|| LayoutError::BadLayoutFile {
                path: index_path.display().to_string(),
                reason: "existing index.json is not an OCI index; refusing to overwrite it".into(),
            })?,
        Err(_) => Vec::new(),
    };
    let name_of = |e: &serde_json::Value| {
        e.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let digest_of =
        |e: &serde_json::Value| e.get("digest").and_then(|v| v.as_str()).map(str::to_string);
    let new_names: HashSet<String> = new.iter().filter_map(name_of).collect();
    let new_unnamed: HashSet<String> = new
        .iter()
        .filter(|e| name_of(e).is_none())
        .filter_map(digest_of)
        .collect();
    entries.retain(|e| match name_of(e) {
        Some(n) => !new_names.contains(&n),
        None => digest_of(e).is_none_or(|d| !new_unnamed.contains(&d)),
    });
    entries.extend(new.iter().cloned());
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
    write_atomic(&index_path, &index_json(&entries))?;
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(LayoutError::io("creating", &tmp))?;
    f.write_all(bytes)
        .map_err(LayoutError::io("writing", &tmp))?;
    f.sync_all().map_err(LayoutError::io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(LayoutError::io("renaming", path))?;
    Ok(())
}

/// Where a file is written before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut n = path.as_os_str().to_owned();
    n.push(".partial");
    PathBuf::from(n)
}

/// A tar header for an entry of a layout tarball (regular file or directory).
pub fn header(size: u64, mode: u32, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

/// Write the tarball to `PATH.partial` (renamed when complete) or, split, as parts.
fn export_tar(
    store: &Store,
    plan: &Plan,
    path: &Path,
    format: Format,
    opts: &ExportOptions,
    report: &ExportReport,
) -> Result<Vec<PathBuf>, LayoutError> {
    if let Some(size) = opts.split {
        let mut w = SplitWriter::new(path, size);
        return match write_tar(store, plan, &mut w, format, opts, report, path) {
            Ok(()) => w.finish(),
            Err(e) => {
                w.abandon();
                Err(e)
            }
        };
    }
    write_partial(path, |out, tmp| {
        write_tar(store, plan, out, format, opts, report, tmp)
    })?;
    Ok(Vec::new())
}

/// Write a file through `PATH.partial`: synced and renamed into place when `write`
/// succeeds, removed when it fails.
pub(crate) fn write_partial(
    path: &Path,
    write: impl FnOnce(&mut dyn Write, &Path) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let tmp = tmp_path(path);
    let file = File::create(&tmp).map_err(LayoutError::io("creating", &tmp))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut out, &tmp).and_then(|()| {
        out.into_inner()
            .map_err(|e| LayoutError::io("writing", &tmp)(e.into_error()))
    });
    match result {
        Ok(f) => {
            f.sync_all().map_err(LayoutError::io("syncing", &tmp))?;
            fs::rename(&tmp, path).map_err(LayoutError::io("renaming", path))?;
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `out` wrapped in the compression `format` names (none for a plain tar). Finished
/// explicitly, so an error writing the compressed stream's end is reported, not dropped.
pub(crate) enum Compressor<'a> {
    Plain(&'a mut dyn Write),
    Gzip(flate2::write::GzEncoder<&'a mut dyn Write>),
    Zstd(zstd::stream::write::Encoder<'static, &'a mut dyn Write>),
}

impl<'a> Compressor<'a> {
    pub(crate) fn new(
        out: &'a mut dyn Write,
        format: Format,
        shown: &Path,
    ) -> Result<Compressor<'a>, LayoutError> {
        Ok(match format {
            Format::TarGz => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::fast(),
            )),
            Format::TarZst => Compressor::Zstd(
                zstd::stream::write::Encoder::new(out, 3)
                    .map_err(LayoutError::io("starting zstd for", shown))?,
            ),
            _ => Compressor::Plain(out),
        })
    }

    /// Write the compressed stream's end and flush.
    pub(crate) fn finish(self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(g) => g.finish()?.flush(),
            Compressor::Zstd(z) => z.finish()?.flush(),
        }
    }
}

impl Write for Compressor<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}

/// The layout as a reproducible tar stream (compressed by `format`) into `out`.
fn write_tar(
    store: &Store,
    plan: &Plan,
    out: &mut dyn Write,
    format: Format,
    opts: &ExportOptions,
    report: &ExportReport,
    shown: &Path,
) -> Result<(), LayoutError> {
    let werr = || LayoutError::io("writing", shown);
    let mut b = tar::Builder::new(Compressor::new(out, format, shown)?);
    b.mode(tar::HeaderMode::Deterministic);
    // index.json and the manifests come first, so an import knows every blob's declared
    // size before its bytes (and checks each entry's header against it); then the other
    // blobs. Each group sorted by digest, for reproducible bytes.
    let annotations = opts
        .base
        .as_ref()
        .and_then(|b| b.id.as_ref())
        .map(|id| serde_json::json!({ ANNOTATION_BASE: id.to_string() }));
    let index = index_json_annotated(&plan.entries, annotations);
    b.append_data(
        &mut header(OCI_LAYOUT.len() as u64, 0o644, false),
        "oci-layout",
        OCI_LAYOUT,
    )
    .map_err(werr())?;
    b.append_data(
        &mut header(index.len() as u64, 0o644, false),
        "index.json",
        &index[..],
    )
    .map_err(werr())?;
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
    b.append_data(&mut header(0, 0o755, true), "blobs/", io::empty())
        .map_err(werr())?;
    for alg in algs {
        b.append_data(
            &mut header(0, 0o755, true),
            format!("blobs/{alg}/"),
            io::empty(),
        )
        .map_err(werr())?;
    }
    let total = report.bytes;
    let mut done = 0;
    for (_, d, size) in blobs {
        let f = store.open_blob(d)?;
        b.append_data(
            &mut header(size, 0o644, false),
            format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()),
            f,
        )
        .map_err(werr())?;
        done += size;
        if let Some(p) = &opts.progress {
            p(done, total);
        }
    }
    b.into_inner()
        .and_then(Compressor::finish)
        .map_err(werr())?;
    Ok(())
}
