//! The store handle: the metadata trees it keeps, where files live, and the locks and GC epoch
//! every mutation takes. What it does is split by responsibility: [`crate::open`] (opening,
//! recovery after an unclean close), [`crate::lease`], [`crate::blob`] (ingest, put, hold,
//! read), [`crate::graph`] (manifests, edges, walks, referrers), [`crate::tag`] (tags and
//! pins), [`crate::image`] (what `images` and `inspect` show), [`crate::gc`],
//! [`crate::verify`], [`crate::du`], [`crate::state`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::backend::{Backend, Location};
use crate::error::Result;
use crate::lock::StoreLock;
use sealift_oci::digest::Digest;

// The types each part defines, under the path they had when this file held all of them.
pub use crate::blob::PutOutcome;
pub use crate::format::FORMAT_VERSION;
pub use crate::graph::{Edge, Graph, ManifestOptions, StoredManifest};
pub use crate::lease::{Lease, LeaseGuard};
pub use crate::tag::TagEntry;

/// Number of per-digest locks (see [`Store::stripe`]).
pub(crate) const STRIPES: usize = 64;

/// An open store. One per process: see [`StoreLock`].
pub struct Store {
    pub(crate) root: PathBuf,
    /// Where blob bytes live (see [`crate::backend`]).
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) db: crate::kv::Db,
    pub(crate) blobs: crate::kv::Tree,
    pub(crate) edges: crate::kv::Tree,
    pub(crate) referrers: crate::kv::Tree,
    pub(crate) tags: crate::kv::Tree,
    pub(crate) pins: crate::kv::Tree,
    pub(crate) leases: crate::kv::Tree,
    pub(crate) holds: crate::kv::Tree,
    pub(crate) ingests: crate::kv::Tree,
    pub(crate) meta: crate::kv::Tree,
    /// Per-manifest summaries (see [`crate::summary`]): derived, rebuilt when absent.
    pub(crate) summaries: crate::kv::Tree,
    pub(crate) session: u64,
    /// Mutators hold it shared across "read epoch, touch, commit"; GC holds it exclusively
    /// only to bump the epoch. So every mutation is either visible to GC's mark or stamped
    /// with GC's epoch, without pausing writers for the whole collection.
    pub(crate) gate: RwLock<()>,
    /// Per-digest locks: GC's "delete record, unlink file" and a put's "rename file, insert
    /// record" for the same digest never interleave.
    pub(crate) stripes: Vec<Mutex<()>>,
    pub(crate) _lock: StoreLock,
}

/// Default store directory: `$SEALIFT_STORE`, else `$XDG_DATA_HOME/sealift`, else
/// `~/.local/share/sealift`.
pub fn default_store_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SEALIFT_STORE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("sealift");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/sealift")
}

impl Store {
    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a committed blob's bytes live in a store with local blobs (tests use it to
    /// damage a store on purpose). Code that reads bytes uses [`Store::open_blob`], and
    /// code that links files uses [`Store::blob_file`].
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join(crate::backend::blob_key(d))
    }

    /// The local file holding a blob, when the store keeps its blobs in local files.
    pub fn blob_file(&self, d: &Digest) -> Option<PathBuf> {
        self.backend.local_path(d)
    }

    /// Where the store keeps its blob bytes.
    pub fn blob_location(&self) -> Location {
        self.backend.location()
    }

    /// The blob backend (serve asks it for presigned URLs; migrate copies between two).
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Which lock stripe guards `d` (by the first byte of its hash).
    fn stripe_index(d: &Digest) -> usize {
        d.to_key().get(1).copied().unwrap_or(0) as usize % STRIPES
    }

    pub(crate) fn stripe(&self, d: &Digest) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[Self::stripe_index(d)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The stripes of several digests, each locked once, in index order (so that two
    /// batches locking overlapping sets cannot deadlock).
    pub(crate) fn stripes<'a>(
        &self,
        ds: impl Iterator<Item = &'a Digest>,
    ) -> Vec<std::sync::MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = ds.map(Self::stripe_index).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| self.stripes[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }

    pub(crate) fn gate_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Current GC epoch.
    pub(crate) fn epoch(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(b"epoch")?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Flush metadata to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
