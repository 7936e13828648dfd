//! Opening a store (directories, format version and its upgrade, lock, the metadata
//! database) and recovering what an unclean
//! close left: process-bound leases, records without files, orphan and partial files. Also
//! closing, which removes the `open` marker recovery looks for.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use crate::backend::{self, ConnectOptions, Location};
use crate::error::{Error, Result};
use crate::format::{FORMAT_VERSION, META_FILE};
use crate::lease::Lease;
use crate::lock::StoreLock;
use crate::record::{self, now, LeaseRecord};
use crate::store::{Store, STRIPES};

/// The metadata engine's page cache. Reads beyond it come from the kernel's page cache; a
/// listing of 10k images or a GC mark reads each page about once, so a larger cache only
/// grows a process's memory with the store.
const META_CACHE_BYTES: usize = 16 << 20;

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.meta.remove(b"open");
        if let Err(e) = self.db.flush() {
            tracing::warn!("flushing store metadata on close: {e}");
        }
    }
}

impl Store {
    /// Open (creating if needed) the store at `root`, take its lock, and recover what a
    /// crashed process left: its process-bound leases and its partial ingest files.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        Store::open_at(root.as_ref(), None, &ConnectOptions::default())
    }

    /// [`Store::open`] with explicit backend settings (an S3 endpoint and credentials)
    /// instead of the environment's.
    pub fn open_with(root: impl AsRef<Path>, options: &ConnectOptions) -> Result<Store> {
        Store::open_at(root.as_ref(), None, options)
    }

    /// Create the store at `root` with its blobs at `location` (`sealift init --blobs`), or
    /// open it if it exists with its blobs there already. A store that keeps its blobs
    /// elsewhere is refused with [`Error::LocationMismatch`]: moving them is `migrate`'s
    /// work, never a side effect of opening.
    pub fn init(root: impl AsRef<Path>, location: &Location) -> Result<Store> {
        Store::init_with(root, location, &ConnectOptions::default())
    }

    /// [`Store::init`] with explicit backend settings. Also checks that the blob location
    /// answers (one listing request), so a wrong bucket or credentials show now rather
    /// than at the first put.
    pub fn init_with(
        root: impl AsRef<Path>,
        location: &Location,
        options: &ConnectOptions,
    ) -> Result<Store> {
        let store = Store::open_at(root.as_ref(), Some(location), options)?;
        if let Err(e) = store.backend.list(&mut |_| Ok(false)) {
            // A store holding nothing forgets a location it could not reach, so that an
            // `init` with the bucket name corrected is not refused as a different one.
            if store.blobs.is_empty()? {
                store.meta.remove(b"blobs")?;
                store.db.flush()?;
            }
            return Err(e);
        }
        Ok(store)
    }

    fn open_at(
        root: &Path,
        requested: Option<&Location>,
        options: &ConnectOptions,
    ) -> Result<Store> {
        let root = root.to_path_buf();
        fs::create_dir_all(&root).map_err(Error::io("creating store directory", &root))?;
        let lock = StoreLock::acquire(&root)?;
        let version_path = root.join("VERSION");
        match fs::read_to_string(&version_path) {
            Ok(v) => {
                let found: u32 = v
                    .trim()
                    .trim_start_matches("sealift-store ")
                    .parse()
                    .unwrap_or(0);
                if found == 1 {
                    crate::format::from_sled(&root)?;
                } else if found != FORMAT_VERSION {
                    return Err(Error::SchemaVersion {
                        found: found.min(255) as u8,
                        expected: FORMAT_VERSION as u8,
                    });
                }
            }
            Err(_) => crate::format::write_version(&root)?,
        }
        let reserve = root.join(RESERVE);
        let store = match Store::open_db_and_recover(&root, lock.duplicate()?, requested, options) {
            Ok(s) => s,
            // Opening writes (the engine's repair after a crash, the open marker, lease cleanup),
            // so on a full disk it fails; the reserve file gives that space back. Any
            // failure frees it: the retry's own error is what the user sees.
            // Not for a blob backend that cannot be reached: that is no disk space problem.
            Err(first)
                if !matches!(
                    first,
                    Error::Backend { .. }
                        | Error::BadLocation { .. }
                        | Error::LocationMismatch { .. }
                ) && fs::remove_file(&reserve).is_ok() =>
            {
                tracing::warn!(
                    "opening the store failed ({first}); freed its {} KiB reserve to retry \
                     (the disk may be full)",
                    RESERVE_BYTES >> 10
                );
                Store::open_db_and_recover(&root, lock.duplicate()?, requested, options)?
            }
            Err(e) => return Err(e),
        };
        store.keep_reserve();
        Ok(store)
    }

    fn open_db_and_recover(
        root: &Path,
        lock: StoreLock,
        requested: Option<&Location>,
        options: &ConnectOptions,
    ) -> Result<Store> {
        // An upgrade killed after its VERSION was written leaves the old database behind.
        crate::format::remove_old_db(root);
        let db = open_db(&root.join(META_FILE))?;
        let t = |n: &'static str| db.open_tree(n);
        let meta = t("meta")?;
        let blobs = t("blobs")?;
        let location = stored_location(root, &blobs, &meta, requested)?;
        let store = Store {
            backend: backend::open::connect_with(root, &location, options)?,
            blobs,
            edges: t("edges")?,
            referrers: t("referrers")?,
            tags: t("tags")?,
            pins: t("pins")?,
            leases: t("leases")?,
            holds: t("holds")?,
            ingests: t("ingests")?,
            summaries: t("summaries")?,
            meta,
            db,
            root: root.to_path_buf(),
            session: rand::random(),
            gate: RwLock::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            _lock: lock,
        };
        store.recover()?;
        Ok(store)
    }

    /// Put the reserve file back if a full disk took it (best effort: without space it
    /// stays absent, and a partial one is removed so it never holds the last bytes).
    fn keep_reserve(&self) {
        let path = self.root.join(RESERVE);
        if fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            return;
        }
        let written = (|| {
            let mut f = File::create(&path)?;
            let zeros = vec![0u8; 64 * 1024];
            let mut left = RESERVE_BYTES;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            // No fsync: a reserve lost in a crash is simply written again.
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            tracing::debug!("no room for the store's reserve file: {e}");
        }
    }

    /// A store closed cleanly removes its `open` marker; finding one on open means the last
    /// process was killed, possibly between renaming a blob into place and committing its
    /// record, so the orphan sweep runs once.
    fn crashed_before(&self) -> Result<bool> {
        let crashed = self.meta.get(b"open")?.is_some();
        self.meta.insert(b"open", self.session.to_be_bytes())?;
        self.db.flush()?;
        Ok(crashed)
    }

    fn recover(&self) -> Result<()> {
        // Leases bound to a process that is gone (any earlier session) are dropped; timed
        // leases stay until they expire.
        let t = now();
        for item in self.leases.iter() {
            let (k, v) = item?;
            let l: LeaseRecord = record::decode("leases", &v)?;
            let dead = match l.expires {
                None => l.session != self.session,
                Some(e) => e <= t,
            };
            if dead {
                let id = u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8]));
                self.release(Lease { id })?;
            }
        }
        if self.crashed_before()? {
            // Records before orphans: a dropped record's file (if it is there but short)
            // becomes an orphan the sweep below removes.
            let dropped = if self.backend.check_records_after_crash() {
                self.drop_records_without_files()?
            } else {
                0
            };
            if dropped > 0 {
                tracing::warn!(
                    "dropped {dropped} records whose blob files are missing or short; \
                     the images that need them show as broken until imported again"
                );
            }
            // Only local files: this process is the only writer. A shared bucket's orphans
            // wait for GC and its grace period (another process may be about to record
            // them).
            let orphans = match self.backend.location() {
                Location::Local => self.sweep_orphan_files(false, Duration::ZERO)?,
                Location::S3 { .. } => Vec::new(),
            };
            if !orphans.is_empty() {
                tracing::info!(
                    "removed {} blob files a crashed process left uncommitted",
                    orphans.len()
                );
            }
        }
        // Partial writes with no record (killed between staging and recording) are garbage.
        for name in self.backend.staged_names()? {
            if self.ingests.get(name.as_bytes())?.is_none() {
                self.backend.discard(&name)?;
            }
        }
        Ok(())
    }

    /// After a crash: a stat per record, dropping those whose file is not in place.
    fn drop_records_without_files(&self) -> Result<usize> {
        let mut n = 0;
        for item in self.records() {
            let (d, rec) = item?;
            if !self.file_present(&d, &rec) {
                self.drop_record(&d, &rec)?;
                n += 1;
            }
        }
        if n > 0 {
            self.db.flush()?;
        }
        Ok(n)
    }
}

/// Where the store at `root` keeps its blobs: what its metadata says (key `blobs`), or,
/// for a store that says nothing (new, or made before the key existed), local files. A new
/// store with a `requested` location remembers it; an existing one must match it.
fn stored_location(
    root: &Path,
    blobs: &crate::kv::Tree,
    meta: &crate::kv::Tree,
    requested: Option<&Location>,
) -> Result<Location> {
    let stored = match meta.get(b"blobs")? {
        Some(v) => Some(
            String::from_utf8_lossy(&v)
                .parse::<Location>()
                .map_err(|e| Error::Corrupt {
                    tree: "meta",
                    reason: format!("its blob location: {e}"),
                })?,
        ),
        None => None,
    };
    // A store holding nothing may still choose; one with blobs must migrate them.
    let is_new = || -> Result<bool> { Ok(blobs.is_empty()?) };
    match (stored, requested) {
        (Some(s), Some(r)) if &s != r => Err(Error::LocationMismatch {
            path: root.to_path_buf(),
            actual: s.to_string(),
            requested: r.to_string(),
        }),
        (Some(s), _) => Ok(s),
        (None, Some(Location::Local)) | (None, None) => Ok(Location::Local),
        (None, Some(r)) => {
            if !is_new()? {
                return Err(Error::LocationMismatch {
                    path: root.to_path_buf(),
                    actual: Location::Local.to_string(),
                    requested: r.to_string(),
                });
            }
            meta.insert(b"blobs", r.to_string().as_bytes())?;
            Ok(r.clone())
        }
    }
}

/// Space kept free for opening the store on a full disk (see [`Store::open`]). Opening
/// writes the open marker and, after a crash, the engine's repaired allocator state.
const RESERVE_BYTES: u64 = 4 << 20;
const RESERVE: &str = "RESERVE";

/// Open the metadata database. The store's LOCK is held, so no other process has it; a
/// conflict can only come from this process's previous handle, whose background flush may
/// still hold the file a moment after the handle is dropped. Wait for it (up to 5 s)
/// instead of failing a reopen.
fn open_db(path: &Path) -> Result<crate::kv::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match crate::kv::Db::open(path, META_CACHE_BYTES) {
            Err(crate::kv::Error(redb::Error::DatabaseAlreadyOpen))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}
