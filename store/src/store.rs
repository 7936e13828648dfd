//! The store: opening it, blobs, manifests, tags, pins and leases.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use crate::error::{Error, Result};
use crate::lock::StoreLock;
use crate::record::{self, now, BlobRecord, EdgeRecord, IngestRecord, LeaseRecord, TagRecord};
use sealift_oci::digest::{Digest, Hasher};
use sealift_oci::manifest::{ManifestView, Role, MAX_MANIFEST_SIZE};
use sealift_oci::reference::{Repo, StoreRef, Tag};

/// Version of the on-disk layout (directories and trees). Written to `VERSION`.
pub const FORMAT_VERSION: u32 = 1;

const STRIPES: usize = 64;
const COPY_BUF: usize = 1024 * 1024;

/// An open store. One per process: see [`StoreLock`].
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) blobs: sled::Tree,
    pub(crate) edges: sled::Tree,
    pub(crate) referrers: sled::Tree,
    pub(crate) tags: sled::Tree,
    pub(crate) pins: sled::Tree,
    pub(crate) leases: sled::Tree,
    pub(crate) holds: sled::Tree,
    pub(crate) ingests: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) session: u64,
    /// Mutators hold it shared across "read epoch, touch, commit"; GC holds it exclusively
    /// only to bump the epoch. So every mutation is either visible to GC's mark or stamped
    /// with GC's epoch, without pausing writers for the whole collection.
    pub(crate) gate: RwLock<()>,
    /// Per-digest locks: GC's "delete record, unlink file" and a put's "rename file, insert
    /// record" for the same digest never interleave.
    stripes: Vec<Mutex<()>>,
    _lock: StoreLock,
}

/// A handle on a lease. Release it with [`Store::release`], or let a [`LeaseGuard`] do it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease id.
    pub id: u64,
}

/// Releases its lease when dropped.
pub struct LeaseGuard<'a> {
    store: &'a Store,
    lease: Lease,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.meta.remove(b"open");
        if let Err(e) = self.db.flush() {
            tracing::warn!("flushing store metadata on close: {e}");
        }
    }
}

impl std::ops::Deref for LeaseGuard<'_> {
    type Target = Lease;
    fn deref(&self) -> &Lease {
        &self.lease
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.store.release(self.lease) {
            tracing::warn!("releasing lease {}: {e}", self.lease.id);
        }
    }
}

/// What a blob put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The bytes were read, verified and stored.
    Written,
    /// The store had it already; the reader was not touched.
    Present,
}

/// Options for [`Store::put_manifest`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ManifestOptions<'a> {
    /// The digest the caller asked for; the bytes must hash to it.
    pub expected: Option<&'a Digest>,
    /// Media type from the descriptor or Content-Type; must agree with the bytes.
    pub media_type: Option<&'a str>,
    /// Accept an index whose entries are not all present (a sparse, platform-filtered
    /// copy). Image manifests always need their config and distributable layers.
    pub sparse: bool,
}

/// A stored manifest.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its parsed view.
    pub view: ManifestView,
    /// Whether it was new to the store.
    pub outcome: PutOutcome,
}

/// One tag in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagEntry {
    /// Repository.
    pub repo: Repo,
    /// Tag.
    pub tag: Tag,
    /// Target.
    pub digest: Digest,
    /// Unix seconds of the last change.
    pub updated: u64,
}

/// One outgoing edge, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Child digest.
    pub child: Digest,
    /// Whether the parent is broken without it.
    pub required: bool,
    /// What it is to the parent.
    pub role: Role,
}

/// What [`Store::walk`] finds: the nodes present (root first) and the required
/// (parent, child) edges whose child is absent.
pub type Graph = (Vec<(Digest, BlobRecord)>, Vec<(Digest, Digest)>);

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

pub(crate) fn edge_key(parent: &Digest, child: &Digest) -> Vec<u8> {
    let mut k = parent.to_key();
    k.extend(child.to_key());
    k
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Manifest => 0,
        Role::Config => 1,
        Role::Layer => 2,
    }
}

fn role_of(c: u8) -> Role {
    match c {
        0 => Role::Manifest,
        1 => Role::Config,
        _ => Role::Layer,
    }
}

fn tag_key(repo: &Repo, tag: &Tag) -> Vec<u8> {
    let mut k = repo.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend(tag.as_str().as_bytes());
    k
}

fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

fn tx_decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    v: &[u8],
) -> std::result::Result<T, ConflictableTransactionError<Error>> {
    record::decode(tree, v).map_err(abort)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing directory", dir))
}

impl Store {
    /// Open (creating if needed) the store at `root`, take its lock, and recover what a
    /// crashed process left: its process-bound leases and its partial ingest files.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(Error::io("creating store directory", &root))?;
        let lock = StoreLock::acquire(&root)?;
        for d in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(Error::io("creating", &p))?;
        }
        let version_path = root.join("VERSION");
        match fs::read_to_string(&version_path) {
            Ok(v) => {
                let found: u32 = v
                    .trim()
                    .trim_start_matches("sealift-store ")
                    .parse()
                    .unwrap_or(0);
                if found != FORMAT_VERSION {
                    return Err(Error::SchemaVersion {
                        found: found.min(255) as u8,
                        expected: FORMAT_VERSION as u8,
                    });
                }
            }
            Err(_) => {
                fs::write(&version_path, format!("sealift-store {FORMAT_VERSION}\n"))
                    .map_err(Error::io("writing", &version_path))?;
            }
        }
        let reserve = root.join(RESERVE);
        let store = match Store::open_db_and_recover(&root, lock.duplicate()?) {
            Ok(s) => s,
            // Opening writes (sled's snapshot of its log, the open marker, lease cleanup),
            // so on a full disk it fails; the reserve file gives that space back. Any
            // failure frees it: the retry's own error is what the user sees.
            Err(first) if fs::remove_file(&reserve).is_ok() => {
                tracing::warn!(
                    "opening the store failed ({first}); freed its {} KiB reserve to retry \
                     (the disk may be full)",
                    RESERVE_BYTES >> 10
                );
                Store::open_db_and_recover(&root, lock.duplicate()?)?
            }
            Err(e) => return Err(e),
        };
        store.keep_reserve();
        Ok(store)
    }

    fn open_db_and_recover(root: &Path, lock: StoreLock) -> Result<Store> {
        let db_dir = root.join("db");
        remove_snapshot_leftovers(&db_dir);
        let db = open_db(&db_dir)?;
        let t = |n: &str| db.open_tree(n);
        let store = Store {
            blobs: t("blobs")?,
            edges: t("edges")?,
            referrers: t("referrers")?,
            tags: t("tags")?,
            pins: t("pins")?,
            leases: t("leases")?,
            holds: t("holds")?,
            ingests: t("ingests")?,
            meta: t("meta")?,
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
        self.meta.insert(b"open", &self.session.to_be_bytes())?;
        self.db.flush()?;
        Ok(crashed)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a committed blob's bytes live.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    pub(crate) fn stripe(&self, d: &Digest) -> std::sync::MutexGuard<'_, ()> {
        let k = d.to_key();
        let i = k.get(1).copied().unwrap_or(0) as usize % STRIPES;
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn gate_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Current GC epoch.
    pub(crate) fn epoch(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(b"epoch")?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
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
                let id = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                self.release(Lease { id })?;
            }
        }
        if self.crashed_before()? {
            // Records before orphans: a dropped record's file (if it is there but short)
            // becomes an orphan the sweep below removes.
            let dropped = self.drop_records_without_files()?;
            if dropped > 0 {
                tracing::warn!(
                    "dropped {dropped} records whose blob files are missing or short; \
                     the images that need them show as broken until imported again"
                );
            }
            let orphans = self.sweep_orphan_files(false)?;
            if !orphans.is_empty() {
                tracing::info!(
                    "removed {} blob files a crashed process left uncommitted",
                    orphans.len()
                );
            }
        }
        // Partial files whose lease is gone are garbage.
        let dir = self.ingest_dir();
        let entries = fs::read_dir(&dir).map_err(Error::io("reading", &dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if self.ingests.get(name.as_bytes())?.is_none() {
                let _ = fs::remove_file(e.path());
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

    // ---- leases -------------------------------------------------------------------------

    /// Take a lease. With `ttl: None` it lasts until released or until this process ends;
    /// with a ttl it survives restarts until it expires (for resumable work).
    pub fn lease(&self, note: &str, ttl: Option<Duration>) -> Result<LeaseGuard<'_>> {
        let lease = self.lease_detached(note, ttl)?;
        Ok(LeaseGuard { store: self, lease })
    }

    /// Like [`Store::lease`], but nothing releases it automatically.
    pub fn lease_detached(&self, note: &str, ttl: Option<Duration>) -> Result<Lease> {
        let id = self.db.generate_id()? + 1;
        let rec = LeaseRecord {
            session: self.session,
            pid: std::process::id(),
            note: note.to_string(),
            created: now(),
            expires: ttl.map(|d| now() + d.as_secs().max(1)),
        };
        self.leases.insert(id.to_be_bytes(), record::encode(&rec))?;
        Ok(Lease { id })
    }

    /// Release a lease and everything it holds (the held content stays if anything else
    /// reaches it; otherwise the next GC collects it).
    pub fn release(&self, lease: Lease) -> Result<()> {
        let prefix = lease.id.to_be_bytes();
        let mut batch = sled::Batch::default();
        for item in self.holds.scan_prefix(prefix) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.holds.apply_batch(batch)?;
        for item in self.ingests.iter() {
            let (k, v) = item?;
            let r: IngestRecord = record::decode("ingests", &v)?;
            if r.lease == lease.id {
                self.ingests.remove(&k)?;
                let _ =
                    fs::remove_file(self.ingest_dir().join(String::from_utf8_lossy(&k).as_ref()));
            }
        }
        self.leases.remove(prefix)?;
        Ok(())
    }

    // ---- blobs --------------------------------------------------------------------------

    /// The record of a blob or manifest, if the store has it.
    pub fn record(&self, d: &Digest) -> Result<Option<BlobRecord>> {
        self.blobs
            .get(d.to_key())?
            .map(|v| record::decode("blobs", &v))
            .transpose()
    }

    /// Whether a record's file is in place with the recorded size: a stat, not a hash.
    pub fn file_present(&self, d: &Digest, rec: &BlobRecord) -> bool {
        fs::metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == rec.size)
    }

    /// Drop a record whose bytes are gone or wrong (and the edges it owned): its parents
    /// then show as broken, and the next put of the digest writes it afresh.
    pub(crate) fn drop_record(&self, d: &Digest, rec: &BlobRecord) -> Result<()> {
        self.blobs.remove(d.to_key())?;
        self.forget_edges(d, rec)
    }

    /// "Exists, and hold it" as one transaction, so GC cannot take it between the check
    /// and the use. Returns the record when present, and only when its file is in place
    /// too: a record whose file is missing (a store damaged by hand, or by a crash of an
    /// older sealift's GC) must not make a put skip the bytes that would repair it.
    pub fn hold(&self, lease: &Lease, d: &Digest) -> Result<Option<BlobRecord>> {
        let r = self.hold_record(lease, d)?;
        match r {
            Some(rec) if !self.file_present(d, &rec) => {
                tracing::warn!("{d}: recorded but its file is missing or short; writing it again");
                Ok(None)
            }
            r => Ok(r),
        }
    }

    fn hold_record(&self, lease: &Lease, d: &Digest) -> Result<Option<BlobRecord>> {
        let _g = self.gate_shared();
        let epoch = self.epoch()?;
        let key = d.to_key();
        let mut hold_key = lease.id.to_be_bytes().to_vec();
        hold_key.extend(&key);
        let r =
            (&self.blobs, &self.holds, &self.leases).transaction(|(blobs, holds, leases)| {
                if leases.get(lease.id.to_be_bytes())?.is_none() {
                    return Err(abort(Error::LeaseGone(lease.id)));
                }
                let Some(v) = blobs.get(&key)? else {
                    return Ok(None);
                };
                let mut rec: BlobRecord = tx_decode("blobs", &v)?;
                rec.touched = epoch;
                blobs.insert(key.as_slice(), record::encode(&rec))?;
                holds.insert(hold_key.as_slice(), &[record::SCHEMA_VERSION][..])?;
                Ok(Some(rec))
            })?;
        Ok(r)
    }

    /// Open a committed blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        if self.record(d)?.is_none() {
            return Err(Error::NotFound(d.clone()));
        }
        let p = self.blob_path(d);
        File::open(&p).map_err(Error::io("opening blob", &p))
    }

    /// Read a whole small blob (configs, manifests) into memory, bounded by `limit`.
    pub fn read_small(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        let rec = self.record(d)?.ok_or_else(|| Error::NotFound(d.clone()))?;
        if rec.size > limit {
            return Err(Error::SizeMismatch {
                digest: d.clone(),
                expected: limit,
                actual: rec.size,
                truncated: true,
            });
        }
        let mut buf = Vec::with_capacity(rec.size as usize);
        self.open_blob(d)?
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(Error::io("reading blob", self.blob_path(d)))?;
        Ok(buf)
    }

    /// Stream a blob into the store: hash while writing to `ingest/`, stop past `size`,
    /// verify digest and size, fsync, rename into `blobs/`, fsync the directory, and only
    /// then commit its record (held by `lease`). When the store already has the digest the
    /// reader is not read at all. An empty `media_type` means "not known yet": the first
    /// manifest that links the blob fills it in.
    pub fn put_blob(
        &self,
        lease: &Lease,
        digest: &Digest,
        size: u64,
        media_type: &str,
        reader: &mut dyn Read,
    ) -> Result<PutOutcome> {
        if let Some(rec) = self.hold(lease, digest)? {
            if rec.size != size {
                return Err(Error::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: rec.size,
                    truncated: false,
                });
            }
            return Ok(PutOutcome::Present);
        }
        let (tmp, name) = self.ingest_to_temp(lease, digest, size, reader)?;
        let r = self.commit(lease, digest, size, media_type, Some(&tmp), None);
        self.ingests.remove(name.as_bytes())?;
        let _ = fs::remove_file(&tmp);
        r.map(|_| PutOutcome::Written)
    }

    fn ingest_to_temp(
        &self,
        lease: &Lease,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(PathBuf, String)> {
        let name = format!("{}-{:016x}", digest.hex(), rand::random::<u64>());
        let path = self.ingest_dir().join(&name);
        let rec = IngestRecord {
            lease: lease.id,
            digest: digest.to_string(),
            size,
            created: now(),
        };
        self.ingests.insert(name.as_bytes(), record::encode(&rec))?;
        let result = (|| {
            let mut file = File::create(&path).map_err(Error::io("creating", &path))?;
            let mut hasher = Hasher::new(digest.algorithm());
            let mut buf = vec![0u8; COPY_BUF];
            let mut seen: u64 = 0;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(Error::Read {
                            digest: digest.clone(),
                            source,
                        })
                    }
                };
                seen += n as u64;
                if seen > size {
                    return Err(Error::SizeMismatch {
                        digest: digest.clone(),
                        expected: size,
                        actual: seen,
                        truncated: true,
                    });
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .map_err(Error::io("writing", &path))?;
            }
            if seen != size {
                return Err(Error::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: seen,
                    truncated: false,
                });
            }
            let actual = hasher.finish();
            if &actual != digest {
                return Err(Error::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            // Committed blobs are read-only: exports hard-link them, and a stray write
            // through a link must not silently corrupt the store.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o444))
                .map_err(Error::io("setting permissions on", &path))?;
            file.sync_all().map_err(Error::io("syncing", &path))?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok((path, name)),
            Err(e) => {
                let _ = fs::remove_file(&path);
                self.ingests.remove(name.as_bytes())?;
                Err(e)
            }
        }
    }

    /// Rename a verified temp file into place and commit its record (and, for manifests,
    /// its edges) in one transaction.
    fn commit(
        &self,
        lease: &Lease,
        digest: &Digest,
        size: u64,
        media_type: &str,
        tmp: Option<&Path>,
        manifest: Option<(&ManifestView, bool)>,
    ) -> Result<()> {
        let _s = self.stripe(digest);
        let _g = self.gate_shared();
        let epoch = self.epoch()?;
        if let Some(tmp) = tmp {
            let dest = self.blob_path(digest);
            fs::rename(tmp, &dest).map_err(Error::io("renaming into", &dest))?;
            fsync_dir(dest.parent().unwrap_or(&self.root))?;
        }
        let key = digest.to_key();
        let mut hold_key = lease.id.to_be_bytes().to_vec();
        hold_key.extend(&key);
        let t = now();
        let children: Vec<_> = manifest.map(|(v, _)| v.children()).unwrap_or_default();
        let sparse = manifest.is_some_and(|(_, s)| s);
        let subject = manifest.and_then(|(v, _)| v.subject.clone());
        let artifact_type = manifest.and_then(|(v, _)| v.effective_artifact_type());
        let rec = BlobRecord {
            size,
            media_type: media_type.to_string(),
            manifest: manifest.is_some(),
            created: t,
            touched: epoch,
            linked: false,
            subject: subject.as_ref().map(|s| s.digest.to_string()),
            artifact_type,
        };
        let trees = (
            &self.blobs,
            &self.edges,
            &self.referrers,
            &self.holds,
            &self.leases,
        );
        let committed = trees.transaction(|(blobs, edges, referrers, holds, leases)| {
            if leases.get(lease.id.to_be_bytes())?.is_none() {
                return Err(abort(Error::LeaseGone(lease.id)));
            }
            for c in &children {
                let d = &c.descriptor.digest;
                let ck = d.to_key();
                let present = link_child(blobs, &ck, epoch, Some(&c.descriptor.media_type))?;
                let required = match present {
                    Some(actual) if actual != c.descriptor.size => {
                        return Err(abort(Error::ChildSize {
                            parent: digest.clone(),
                            child: d.clone(),
                            expected: c.descriptor.size,
                            actual,
                        }))
                    }
                    Some(_) => c.required,
                    None if !c.required => false,
                    None if sparse && c.role == Role::Manifest => false,
                    None => {
                        return Err(abort(Error::MissingChild {
                            parent: digest.clone(),
                            child: d.clone(),
                            media_type: c.descriptor.media_type.clone(),
                            size: c.descriptor.size,
                        }))
                    }
                };
                let e = EdgeRecord {
                    required,
                    role: role_code(c.role),
                };
                edges.insert(edge_key(digest, d), record::encode(&e))?;
            }
            if let Some(s) = &subject {
                referrers.insert(edge_key(&s.digest, digest), &[record::SCHEMA_VERSION][..])?;
            }
            let mut r = rec.clone();
            if let Some(old) = blobs.get(&key)? {
                let old: BlobRecord = tx_decode("blobs", &old)?;
                r.created = old.created;
                r.linked = old.linked;
                if !r.manifest && !old.media_type.is_empty() {
                    r.media_type = old.media_type;
                }
            }
            blobs.insert(key.as_slice(), record::encode(&r))?;
            holds.insert(hold_key.as_slice(), &[record::SCHEMA_VERSION][..])?;
            Ok(())
        });
        if let Err(e) = committed {
            // The file was renamed into blobs/ before the transaction refused it (a missing
            // child, a size disagreement, a released lease): take it back out, or it stays
            // as an orphan that verify reports. Only when no record names the digest: under
            // the stripe, a record here means the file is someone else's committed blob.
            if tmp.is_some() && !self.blobs.contains_key(&key)? {
                let dest = self.blob_path(digest);
                if let Err(rm) = fs::remove_file(&dest) {
                    tracing::warn!("removing refused {}: {rm}", dest.display());
                }
            }
            return Err(e.into());
        }
        self.db.flush()?;
        Ok(())
    }

    /// Store manifest bytes exactly as given. Refuses (naming the digest) a manifest over
    /// 4 MiB, bad JSON, a digest or media type that disagrees, or a required child that is
    /// not in the store; records edges and the referrer link in the same transaction.
    pub fn put_manifest(
        &self,
        lease: &Lease,
        bytes: &[u8],
        opts: ManifestOptions<'_>,
    ) -> Result<StoredManifest> {
        let alg = opts
            .expected
            .map(|d| d.algorithm())
            .unwrap_or(sealift_oci::digest::Algorithm::Sha256);
        let digest = Digest::of(alg, bytes);
        if let Some(e) = opts.expected {
            if e != &digest {
                return Err(Error::DigestMismatch {
                    expected: e.clone(),
                    actual: digest,
                });
            }
        }
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::Manifest {
                digest,
                source: sealift_oci::manifest::ManifestError::TooLarge(bytes.len()),
            });
        }
        let view =
            ManifestView::parse(bytes, opts.media_type).map_err(|source| Error::Manifest {
                digest: digest.clone(),
                source,
            })?;
        for w in &view.warnings {
            tracing::warn!("{digest}: {w}");
        }
        match self.hold(lease, &digest)? {
            Some(rec) if rec.manifest => {
                return Ok(StoredManifest {
                    digest,
                    view,
                    outcome: PutOutcome::Present,
                })
            }
            // Stored as a plain blob (a layout's blobs arrive before anyone knows which are
            // manifests): the file is verified already, so only the graph is committed.
            Some(_) => {
                self.commit(
                    lease,
                    &digest,
                    bytes.len() as u64,
                    &view.media_type,
                    None,
                    Some((&view, opts.sparse)),
                )?;
                return Ok(StoredManifest {
                    digest,
                    view,
                    outcome: PutOutcome::Present,
                });
            }
            None => {}
        }
        let (tmp, name) =
            self.ingest_to_temp(lease, &digest, bytes.len() as u64, &mut &bytes[..])?;
        let r = self.commit(
            lease,
            &digest,
            bytes.len() as u64,
            &view.media_type,
            Some(&tmp),
            Some((&view, opts.sparse)),
        );
        self.ingests.remove(name.as_bytes())?;
        let _ = fs::remove_file(&tmp);
        r?;
        Ok(StoredManifest {
            digest,
            view,
            outcome: PutOutcome::Written,
        })
    }

    /// Read and parse a stored manifest.
    pub fn manifest(&self, d: &Digest) -> Result<(Vec<u8>, ManifestView)> {
        let rec = self.record(d)?.ok_or_else(|| Error::NotFound(d.clone()))?;
        let bytes = self.read_small(d, MAX_MANIFEST_SIZE as u64)?;
        let view = ManifestView::parse(&bytes, Some(&rec.media_type)).map_err(|source| {
            Error::Manifest {
                digest: d.clone(),
                source,
            }
        })?;
        Ok((bytes, view))
    }

    /// Recorded outgoing edges of a manifest.
    pub fn edges(&self, parent: &Digest) -> Result<Vec<Edge>> {
        let prefix = parent.to_key();
        let mut out = Vec::new();
        for item in self.edges.scan_prefix(&prefix) {
            let (k, v) = item?;
            let e: EdgeRecord = record::decode("edges", &v)?;
            if let Some((child, _)) = Digest::from_key(&k[prefix.len()..]) {
                out.push(Edge {
                    child,
                    required: e.required,
                    role: role_of(e.role),
                });
            }
        }
        Ok(out)
    }

    /// Manifests whose `subject` is `subject`.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Digest>> {
        let prefix = subject.to_key();
        let mut out = Vec::new();
        for item in self.referrers.scan_prefix(&prefix) {
            let (k, _) = item?;
            if let Some((d, _)) = Digest::from_key(&k[prefix.len()..]) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Every digest reachable from `root` through recorded edges (root first), with the
    /// required children that are absent as (parent, child) pairs. A graph nesting manifests
    /// deeper than [`MAX_DEPTH`](sealift_oci::manifest::MAX_DEPTH) is [`Error::TooDeep`], so
    /// `set_tag` never names one.
    pub fn walk(&self, root: &Digest) -> Result<Graph> {
        let mut seen = std::collections::HashSet::new();
        // Each digest with the number of manifests on the path to it, the root's included.
        let mut stack = vec![(root.clone(), 1)];
        let mut nodes = Vec::new();
        let mut missing = Vec::new();
        if self.record(root)?.is_none() {
            return Err(Error::NotFound(root.clone()));
        }
        while let Some((d, depth)) = stack.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            let Some(rec) = self.record(&d)? else {
                continue;
            };
            if rec.manifest {
                if depth > sealift_oci::manifest::MAX_DEPTH {
                    return Err(Error::TooDeep {
                        root: root.clone(),
                        at: d,
                        depth,
                    });
                }
                for e in self.edges(&d)? {
                    if self.blobs.contains_key(e.child.to_key())? {
                        stack.push((e.child, depth + 1));
                    } else if e.required {
                        missing.push((d.clone(), e.child));
                    }
                }
            }
            nodes.push((d, rec));
        }
        Ok((nodes, missing))
    }

    // ---- tags and pins ------------------------------------------------------------------

    /// Point `repo:tag` at `digest`, only once its whole graph is present. Every node of the
    /// graph is stamped with the current GC epoch first, so a collection that started
    /// before this tag existed cannot take any of it.
    pub fn set_tag(&self, repo: &Repo, tag: &Tag, digest: &Digest) -> Result<()> {
        let _g = self.gate_shared();
        self.link_graph(digest)?;
        let rec = TagRecord {
            digest: digest.to_string(),
            updated: now(),
        };
        self.tags.insert(tag_key(repo, tag), record::encode(&rec))?;
        self.db.flush()?;
        Ok(())
    }

    /// Check completeness and stamp every node with the current epoch (gate held).
    fn link_graph(&self, digest: &Digest) -> Result<()> {
        let (nodes, missing) = self.walk(digest)?;
        if let Some((parent, child)) = missing.into_iter().next() {
            let (media_type, size) = self
                .manifest(&parent)
                .ok()
                .and_then(|(_, v)| {
                    v.children()
                        .into_iter()
                        .find(|c| c.descriptor.digest == child)
                        .map(|c| (c.descriptor.media_type.clone(), c.descriptor.size))
                })
                .unwrap_or_default();
            return Err(Error::MissingChild {
                parent,
                child,
                media_type,
                size,
            });
        }
        let epoch = self.epoch()?;
        for (d, _) in nodes {
            let key = d.to_key();
            self.blobs.transaction(|b| {
                if link_child(b, &key, epoch, None)?.is_none() {
                    return Err(abort(Error::NotFound(d.clone())));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Remove a tag. Returns whether it existed.
    pub fn remove_tag(&self, repo: &Repo, tag: &Tag) -> Result<bool> {
        let r = self.tags.remove(tag_key(repo, tag))?.is_some();
        self.db.flush()?;
        Ok(r)
    }

    /// All tags, sorted by repo then tag.
    pub fn tags(&self) -> Result<Vec<TagEntry>> {
        let mut out = Vec::new();
        for item in self.tags.iter() {
            let (k, v) = item?;
            let r: TagRecord = record::decode("tags", &v)?;
            let corrupt = |reason: &str| Error::Corrupt {
                tree: "tags",
                reason: reason.to_string(),
            };
            let s = std::str::from_utf8(&k).map_err(|_| corrupt("non-UTF-8 key"))?;
            let (repo, tag) = s
                .split_once('\0')
                .ok_or_else(|| corrupt("key without separator"))?;
            out.push(TagEntry {
                repo: repo.parse()?,
                tag: tag.parse()?,
                digest: r.digest.parse().map_err(|_| corrupt("bad digest"))?,
                updated: r.updated,
            });
        }
        Ok(out)
    }

    /// The digest a reference names. A digest reference must be in the store.
    pub fn resolve(&self, r: &StoreRef) -> Result<Digest> {
        if let Some(d) = &r.digest {
            return match self.record(d)? {
                Some(_) => Ok(d.clone()),
                None => Err(Error::UnknownRef(r.to_string())),
            };
        }
        let tag = r
            .tag
            .clone()
            .unwrap_or_else(|| "latest".parse().expect("valid tag"));
        match self.tags.get(tag_key(&r.repo, &tag))? {
            Some(v) => {
                let t: TagRecord = record::decode("tags", &v)?;
                t.digest.parse().map_err(|_| Error::Corrupt {
                    tree: "tags",
                    reason: format!("bad digest for {r}"),
                })
            }
            None => Err(Error::UnknownRef(r.to_string())),
        }
    }

    /// Pin a digest: a GC root without a tag.
    pub fn pin(&self, digest: &Digest) -> Result<()> {
        let _g = self.gate_shared();
        self.link_graph(digest)?;
        self.pins.insert(digest.to_key(), record::encode(&now()))?;
        self.db.flush()?;
        Ok(())
    }

    /// Remove a pin. Returns whether it existed.
    pub fn unpin(&self, digest: &Digest) -> Result<bool> {
        Ok(self.pins.remove(digest.to_key())?.is_some())
    }

    /// All pinned digests.
    pub fn pins(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for item in self.pins.iter() {
            let (k, _) = item?;
            if let Some((d, _)) = Digest::from_key(&k) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Every blob record, in key order.
    pub fn records(&self) -> impl Iterator<Item = Result<(Digest, BlobRecord)>> + '_ {
        self.blobs.iter().map(|item| {
            let (k, v) = item?;
            let d = Digest::from_key(&k)
                .map(|(d, _)| d)
                .ok_or_else(|| Error::Corrupt {
                    tree: "blobs",
                    reason: "bad key".into(),
                })?;
            Ok((d, record::decode("blobs", &v)?))
        })
    }

    /// Whether a manifest is an index (by its recorded media type).
    pub fn is_index(&self, d: &Digest) -> Result<bool> {
        Ok(self.record(d)?.is_some_and(|r| {
            sealift_oci::media_type::kind(&r.media_type) == sealift_oci::media_type::Kind::Index
        }))
    }

    /// Flush metadata to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// Mark a child as linked and touched; returns its size when present. A blob stored before
/// anyone knew its media type (empty) takes the one its parent's descriptor gives.
fn link_child(
    blobs: &TransactionalTree,
    key: &[u8],
    epoch: u64,
    media_type: Option<&str>,
) -> std::result::Result<Option<u64>, ConflictableTransactionError<Error>> {
    let Some(v) = blobs.get(key)? else {
        return Ok(None);
    };
    let mut rec: BlobRecord = tx_decode("blobs", &v)?;
    let fill = media_type.filter(|_| rec.media_type.is_empty());
    if !rec.linked || rec.touched != epoch || fill.is_some() {
        rec.linked = true;
        rec.touched = epoch;
        if let Some(m) = fill {
            rec.media_type = m.to_string();
        }
        blobs.insert(key, record::encode(&rec))?;
    }
    Ok(Some(rec.size))
}

/// Space kept free for opening the store on a full disk (see [`Store::open`]). Opening
/// needs room for sled's snapshot of its log (a few bytes per page) and a log segment.
const RESERVE_BYTES: u64 = 4 << 20;
const RESERVE: &str = "RESERVE";

/// sled 0.34 writes its snapshot to `snap.<lsn>.generating`, fsyncs, then renames it to
/// `snap.<lsn>`; the previous snapshot is removed only after that rename. A process killed,
/// or a disk filled, before the rename leaves a `.generating` file (empty, or without its
/// trailing length and CRC), and sled's open picks the highest-sorting `snap.*` file, finds
/// it corrupt and refuses every later open ("Read corrupted data at file offset None"). The
/// leftover is never needed: the previous snapshot is still there and the log still holds
/// everything after it. The store's LOCK is held, so no other process is writing one.
fn remove_snapshot_leftovers(db_dir: &Path) {
    let Ok(entries) = fs::read_dir(db_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match fs::remove_file(e.path()) {
                Ok(()) => tracing::info!("removed {name}, a snapshot sled left unfinished"),
                Err(err) => tracing::warn!("removing {}: {err}", e.path().display()),
            }
        }
    }
}

/// Open the sled database. The store's LOCK is held, so no other process has it; a lock
/// conflict can only come from this process's previous handle, whose background I/O
/// threads let go of sled's own file lock a moment after the handle is dropped. Wait for
/// them (up to 5 s) instead of failing a reopen.
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
        {
            // sled reports it as ErrorKind::Other with this text (sled 0.34 config.rs).
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}
