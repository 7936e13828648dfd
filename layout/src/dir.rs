//! An OCI layout directory, read and written: its index.json, blobs opened with path
//! safety (a symlink is refused, never followed), blobs and manifests written atomically,
//! index.json merged.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::{Descriptor, Digest};

use crate::error::LayoutError;
use crate::format::{self, index_json, parse_index, write_atomic, OCI_LAYOUT};

/// A layout directory.
#[derive(Clone, Debug)]
pub struct LayoutDir {
    path: PathBuf,
}

impl LayoutDir {
    /// The layout at `path` (nothing is read yet).
    pub fn new(path: impl Into<PathBuf>) -> LayoutDir {
        LayoutDir { path: path.into() }
    }

    /// Create `blobs/sha256` and `blobs/sha512` under `path`, for writing.
    pub fn create(path: impl Into<PathBuf>) -> Result<LayoutDir, LayoutError> {
        let dir = LayoutDir::new(path);
        for alg in ["sha256", "sha512"] {
            let p = dir.path.join("blobs").join(alg);
            fs::create_dir_all(&p).map_err(LayoutError::io("creating", &p))?;
        }
        Ok(dir)
    }

    /// Its folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.path.join(format::blob_name(d))
    }

    /// The `oci-layout` file checked (1.x); `Ok(false)` when there is none.
    pub fn check_oci_layout(&self) -> Result<bool, LayoutError> {
        let p = self.path.join("oci-layout");
        match fs::read(&p) {
            Ok(b) => format::check_layout_version(&b, &p.display().to_string()).map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// index.json's bytes (a regular file of at most 4 MiB).
    pub fn index_bytes(&self) -> Result<Vec<u8>, LayoutError> {
        let p = self.path.join("index.json");
        let f = match open_regular(&p)? {
            Some(f) => f,
            None => return Err(LayoutError::MissingIndex(self.path.display().to_string())),
        };
        let mut buf = Vec::new();
        f.take(MAX_MANIFEST_SIZE as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(LayoutError::io("reading", &p))?;
        if buf.len() > MAX_MANIFEST_SIZE {
            return Err(LayoutError::BadLayoutFile {
                path: p.display().to_string(),
                reason: "over the 4 MiB limit".into(),
            });
        }
        Ok(buf)
    }

    /// index.json's entries.
    pub fn entries(&self) -> Result<Vec<Descriptor>, LayoutError> {
        let bytes = self.index_bytes()?;
        let shown = self.path.join("index.json").display().to_string();
        Ok(parse_index(&bytes, &shown)?.manifests)
    }

    /// Open blob `d`: `None` when the layout lacks it; a symlink or other non-regular file
    /// is refused.
    pub fn open_blob(&self, d: &Digest) -> Result<Option<File>, LayoutError> {
        open_regular(&self.blob_path(d))
    }

    /// Whether the layout has blob `d` as a regular file of `size` bytes.
    pub fn has_blob(&self, d: &Digest, size: u64) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Write blob `d` from `body` (already verified by the caller, or verifying as it is
    /// read: a read error leaves nothing behind) through a unique `.partial` file, synced
    /// before the rename, so writers of the same blob do not meet.
    pub fn write_blob(&self, d: &Digest, body: &mut dyn Read) -> Result<(), LayoutError> {
        let dest = self.blob_path(d);
        let tmp = PathBuf::from(format!(
            "{}.{:016x}.partial",
            dest.display(),
            rand::random::<u64>()
        ));
        let write = || -> Result<(), LayoutError> {
            let mut f = File::create(&tmp).map_err(LayoutError::io("creating", &tmp))?;
            let mut r = std::io::BufReader::with_capacity(1 << 20, body);
            std::io::copy(&mut r, &mut f).map_err(LayoutError::io("writing", &tmp))?;
            f.flush().map_err(LayoutError::io("writing", &tmp))?;
            f.sync_all().map_err(LayoutError::io("syncing", &tmp))?;
            fs::rename(&tmp, &dest).map_err(LayoutError::io("renaming", &dest))
        };
        let r = write();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    /// Write a manifest's exact bytes.
    pub fn write_manifest(&self, d: &Digest, bytes: &[u8]) -> Result<(), LayoutError> {
        write_atomic(&self.blob_path(d), bytes)
    }

    /// Write `new` into index.json, replacing entries with the same ref name (or, for
    /// unnamed entries, the same digest), and write oci-layout. Both atomically.
    pub fn merge_index(&self, new: &[serde_json::Value]) -> Result<(), LayoutError> {
        merge_index(&self.path, new)
    }
}

/// `path` opened when it is a regular file; `None` when it does not exist; refused when it
/// is a symlink or anything else.
fn open_regular(path: &Path) -> Result<Option<File>, LayoutError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(
            File::open(path).map_err(LayoutError::io("opening", path))?,
        )),
        Ok(m) => Err(LayoutError::UnsafeFile {
            path: path.display().to_string(),
            reason: if m.file_type().is_symlink() {
                "symlinks are refused".into()
            } else {
                "not a regular file".into()
            },
        }),
        Err(_) => Ok(None),
    }
}

/// Write `new` into `dir`'s index.json, replacing entries with the same ref name (or, for
/// unnamed entries, the same digest), and write oci-layout. Both atomically.
pub(crate) fn merge_index(dir: &Path, new: &[serde_json::Value]) -> Result<(), LayoutError> {
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
    write_atomic(&index_path, &index_json(&entries, None))?;
    Ok(())
}
