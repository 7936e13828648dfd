//! The OCI image layout format itself, apart from any store: the `oci-layout` marker,
//! index.json (reading, writing, picking the entry a ref names), tar headers of a layout
//! tarball, and files written atomically through `NAME.partial`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, ManifestView};

use crate::error::LayoutError;

/// The bytes of the `oci-layout` file sealift writes.
pub const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

/// index.json annotation of a delta bundle: the id (sha256) of the inventory it was made
/// against. Its blobs that inventory lists are left out.
pub const ANNOTATION_BASE: &str = "io.sealift.bundle.base";

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

/// The bytes of an `index.json` listing `entries` (descriptors with their annotations),
/// with the index's own `annotations` when given.
pub fn index_json(
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

/// An index.json entry for `desc`, named `reference` when given.
pub fn index_entry(desc: &Descriptor, reference: Option<&str>) -> serde_json::Value {
    let mut e = serde_json::json!({
        "mediaType": desc.media_type,
        "digest": desc.digest.to_string(),
        "size": desc.size,
    });
    if let Some(a) = &desc.artifact_type {
        e["artifactType"] = serde_json::Value::String(a.clone());
    }
    if let Some(r) = reference {
        e["annotations"] = serde_json::json!({ mt::ANNOTATION_REF_NAME: r });
    }
    e
}

/// Parse index.json's bytes (`shown` names it in messages) into its entries.
pub fn parse_index(bytes: &[u8], shown: &str) -> Result<ManifestView, LayoutError> {
    ManifestView::parse(bytes, Some(mt::OCI_INDEX)).map_err(|e| LayoutError::BadLayoutFile {
        path: shown.to_string(),
        reason: e.to_string(),
    })
}

/// Which index.json entry a ref selects.
#[derive(Debug)]
pub enum Selection {
    /// This one.
    Found(Box<Descriptor>),
    /// No entry has that ref name (or the layout names no image at all).
    None,
    /// No ref was given and several images are named: their names.
    Many(Vec<String>),
}

/// Pick the index.json entry `reference` names (its `org.opencontainers.image.ref.name`),
/// or, with no reference, the only named image (the only entry when none is named).
pub fn select(entries: &[Descriptor], reference: Option<&str>) -> Selection {
    if let Some(r) = reference {
        return match entries.iter().find(|e| e.ref_name() == Some(r)) {
            Some(e) => Selection::Found(Box::new(e.clone())),
            None => Selection::None,
        };
    }
    let named: Vec<&Descriptor> = entries.iter().filter(|e| e.ref_name().is_some()).collect();
    let pool: Vec<&Descriptor> = if named.is_empty() {
        entries.iter().collect()
    } else {
        named
    };
    match pool.as_slice() {
        [one] => Selection::Found(Box::new((*one).clone())),
        [] => Selection::None,
        many => Selection::Many(
            many.iter()
                .filter_map(|e| e.ref_name().map(str::to_string))
                .collect(),
        ),
    }
}

/// Refuse an `oci-layout` file that is not JSON or names a version other than 1.x.
pub fn check_layout_version(bytes: &[u8], path: &str) -> Result<(), LayoutError> {
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

/// Read a manifest-sized entry of `size` bytes, refusing one over the 4 MiB limit before
/// allocating.
pub fn read_bounded(r: &mut impl Read, size: u64, what: &str) -> io::Result<Vec<u8>> {
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

/// A blob's path inside a layout: `blobs/<alg>/<hex>`.
pub fn blob_name(d: &sealift_oci::Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// Where a file is written before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut n = path.as_os_str().to_owned();
    n.push(".partial");
    PathBuf::from(n)
}

/// Write `bytes` to `path` through `PATH.partial`, synced before the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    write_partial(path, |out, tmp| {
        out.write_all(bytes)
            .map_err(LayoutError::io("writing", tmp))
    })
}

/// Write a file through `PATH.partial`: synced and renamed into place when `write`
/// succeeds, removed when it fails.
pub fn write_partial(
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
