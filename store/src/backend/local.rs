//! Blobs as files under the store directory: `blobs/<alg>/<hex>`, staged in `ingest/`.
//!
//! A staged file is fsync'd before it is renamed into place, and the rename is made durable
//! by fsyncing its directory ([`Backend::sync`]) before the store commits the record: a
//! crash never leaves a record whose file a power loss could take back. Committed files are
//! read-only: exports hard-link them, and a stray write through a link must not silently
//! corrupt the store.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{blob_key, Backend, BlobReader, Listed, Location, Staged};
use crate::error::{Error, Result};
use sealift_oci::digest::{Algorithm, Digest};

/// The algorithms a store keeps directories for.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// Blob files under a store directory.
pub struct LocalBlobs {
    root: PathBuf,
    /// Per algorithm directory: whether a rename into it is not yet fsync'd.
    dirty: Arc<[AtomicBool; 2]>,
    /// Per algorithm directory, open: a stat relative to it looks up one name instead of
    /// walking the store's whole path (`images` stats every node of 10k graphs, and the
    /// walk was a third of that).
    dirs: Arc<[File; 2]>,
}

impl LocalBlobs {
    /// The blob files of the store at `root` (creating its directories).
    pub fn open(root: &Path) -> Result<LocalBlobs> {
        for d in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(Error::io("creating", &p))?;
        }
        let dir = |a: Algorithm| {
            let p = root.join("blobs").join(a.as_str());
            File::open(&p).map_err(Error::io("opening", &p))
        };
        Ok(LocalBlobs {
            root: root.to_path_buf(),
            dirty: Arc::new([AtomicBool::new(false), AtomicBool::new(false)]),
            dirs: Arc::new([dir(ALGORITHMS[0])?, dir(ALGORITHMS[1])?]),
        })
    }

    /// Where the bytes of `d` live.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join(blob_key(d))
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// The open directory holding `d`'s file.
    fn dir(&self, d: &Digest) -> &File {
        &self.dirs[Self::alg_index(d.algorithm())]
    }

    fn alg_index(a: Algorithm) -> usize {
        ALGORITHMS.iter().position(|x| *x == a).unwrap_or(0)
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing directory", dir))
}

/// A file being written under `ingest/`.
struct LocalStaged {
    name: String,
    path: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    /// The backend's flags and the index of this digest's directory among them.
    dirty: (Arc<[AtomicBool; 2]>, usize),
    /// Whether the permissions are set already ([`Staged::finish`]).
    finished: bool,
    /// Whether the file is fsync'd already: a batch's large blob is sealed on its own
    /// thread, then handed to the commit that seals every write it gets.
    synced: bool,
    done: bool,
}

impl Staged for LocalStaged {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, buf: &[u8]) -> Result<()> {
        let f = self.file.as_mut().ok_or_else(|| closed(&self.path))?;
        f.write_all(buf).map_err(Error::io("writing", &self.path))
    }

    fn finish(&mut self) -> Result<()> {
        let f = self.file.as_ref().ok_or_else(|| closed(&self.path))?;
        f.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(Error::io("setting permissions on", &self.path))?;
        self.finished = true;
        Ok(())
    }

    fn seal(&mut self) -> Result<()> {
        if self.synced {
            return Ok(());
        }
        if !self.finished {
            self.finish()?;
        }
        let f = self.file.as_ref().ok_or_else(|| closed(&self.path))?;
        f.sync_all().map_err(Error::io("syncing", &self.path))?;
        self.synced = true;
        Ok(())
    }

    fn publish(mut self: Box<Self>) -> Result<()> {
        self.file = None;
        fs::rename(&self.path, &self.dest).map_err(Error::io("renaming into", &self.dest))?;
        self.done = true;
        self.dirty.0[self.dirty.1].store(true, Ordering::Release);
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.file = None;
        let _ = fs::remove_file(&self.path);
        self.done = true;
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn closed(p: &Path) -> Error {
    Error::io("writing", p)(std::io::Error::other("staged file already closed"))
}

impl Backend for LocalBlobs {
    fn describe(&self) -> String {
        format!("local {}", self.root.join("blobs").display())
    }

    fn location(&self) -> Location {
        Location::Local
    }

    fn stat(&self, d: &Digest) -> Result<Option<u64>> {
        match rustix::fs::statat(self.dir(d), d.hex(), rustix::fs::AtFlags::empty()) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() => {
                Ok(Some(st.st_size as u64))
            }
            Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("reading metadata of", self.path(d))(e.into())),
        }
    }

    fn open(&self, d: &Digest, offset: u64) -> Result<BlobReader> {
        let p = self.path(d);
        let mut f = File::open(&p).map_err(Error::io("opening blob", &p))?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .map_err(Error::io("seeking in blob", &p))?;
        }
        Ok(BlobReader::File(f))
    }

    fn local_path(&self, d: &Digest) -> Option<PathBuf> {
        Some(self.path(d))
    }

    fn stage(&self, d: &Digest, _size: u64, unique: &str) -> Result<Box<dyn Staged>> {
        let name = format!("{}-{unique}", d.hex());
        let path = self.ingest_dir().join(&name);
        let file = File::create(&path).map_err(Error::io("creating", &path))?;
        Ok(Box::new(LocalStaged {
            name,
            path,
            dest: self.path(d),
            file: Some(file),
            dirty: (self.dirty.clone(), Self::alg_index(d.algorithm())),
            finished: false,
            synced: false,
            done: false,
        }))
    }

    fn discard(&self, name: &str) -> Result<()> {
        // Names come from the store's own records; refuse anything that could leave
        // ingest/ should a record be damaged.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Ok(());
        }
        match fs::remove_file(self.ingest_dir().join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("removing", self.ingest_dir().join(name))(e))
            }
            _ => Ok(()),
        }
    }

    fn staged_names(&self) -> Result<Vec<String>> {
        let dir = self.ingest_dir();
        let entries = fs::read_dir(&dir).map_err(Error::io("reading", &dir))?;
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    fn sync(&self) -> Result<()> {
        for (i, a) in ALGORITHMS.iter().enumerate() {
            if self.dirty[i].swap(false, Ordering::AcqRel) {
                let dir = self.root.join("blobs").join(a.as_str());
                if let Err(e) = fsync_dir(&dir) {
                    self.dirty[i].store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn delete(&self, d: &Digest) -> Result<()> {
        match rustix::fs::unlinkat(self.dir(d), d.hex(), rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("removing", self.path(d))(e.into())),
        }
    }

    fn delete_listed(&self, item: &Listed) -> Result<()> {
        // Listed names are the full paths `list` gave.
        let p = PathBuf::from(&item.name);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", &p)(e)),
            _ => Ok(()),
        }
    }

    fn list(&self, visit: &mut dyn FnMut(Listed) -> Result<bool>) -> Result<()> {
        for alg in ALGORITHMS {
            let dir = self.root.join("blobs").join(alg.as_str());
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let item = Listed {
                    digest: format!("{}:{file}", alg.as_str()).parse().ok(),
                    name: e.path().display().to_string(),
                    modified: None,
                    size: None,
                };
                if !visit(item)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn modified(&self, item: &Listed) -> Result<std::time::SystemTime> {
        match item.modified {
            Some(m) => Ok(m),
            None => fs::metadata(&item.name)
                .and_then(|m| m.modified())
                .map_err(Error::io("reading metadata of", &item.name)),
        }
    }

    fn presign(&self, _d: &Digest, _ttl: Duration) -> Result<Option<String>> {
        Ok(None)
    }

    fn check_records_after_crash(&self) -> bool {
        true
    }
}
