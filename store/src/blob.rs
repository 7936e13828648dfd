//! Blobs: records, holds, reading, and ingest (stage with the backend while hashing,
//! verify, seal, publish, make it durable, then commit the record, and a manifest's edges,
//! in one transaction).

use std::io::Read;

use crate::kv::Transactional;
use crate::kv::{ConflictableTransactionError, TransactionalTree};

use crate::backend::{BlobReader, Staged};
use crate::error::{Error, Result};
use crate::hashing::{copy_hashing, copy_hashing_aside, HASH_THREAD_MIN};
use crate::lease::Lease;
use crate::record::{self, edge_key, now, role_code, BlobRecord, IngestRecord};
use crate::store::Store;
use crate::tx::{abort, link_child, tx_decode};
use sealift_oci::digest::Digest;
use sealift_oci::manifest::{ManifestView, Role};

/// What a blob put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The bytes were read, verified and stored.
    Written,
    /// The store had it already; the reader was not touched.
    Present,
}

impl Store {
    /// The record of a blob or manifest, if the store has it.
    pub fn record(&self, d: &Digest) -> Result<Option<BlobRecord>> {
        self.blobs
            .get(d.to_key())?
            .map(|v| record::decode("blobs", &v))
            .transpose()
    }

    /// Whether a record's bytes are in place with the recorded size: a stat, not a hash.
    /// A backend that cannot answer (an object store that is down) counts as "not in
    /// place", which makes a put write the bytes again rather than trust them.
    pub fn file_present(&self, d: &Digest, rec: &BlobRecord) -> bool {
        self.bytes_in_place(d, rec.size)
    }

    /// [`Store::file_present`] for a size known without the whole record.
    pub(crate) fn bytes_in_place(&self, d: &Digest, size: u64) -> bool {
        match self.backend.stat(d) {
            Ok(s) => s == Some(size),
            Err(e) => {
                tracing::warn!("{d}: {e}");
                false
            }
        }
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
        // Read first: an absent blob needs no transaction (a write transaction is exclusive),
        // and neither does one this lease holds already and that was touched in this
        // epoch (GC spares it: its holds are roots, and its delete re-check reads the
        // epoch). A put that finds nothing stages the bytes, and its commit merges with a
        // record that may have appeared meanwhile.
        if !self.leases.contains_key(lease.id.to_be_bytes())? {
            return Err(Error::LeaseGone(lease.id));
        }
        match self.blobs.get(&key)? {
            None => return Ok(None),
            Some(v) => {
                let rec: BlobRecord = record::decode("blobs", &v)?;
                if rec.touched == epoch && self.holds.contains_key(&hold_key)? {
                    return Ok(Some(rec));
                }
            }
        }
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
    pub fn open_blob(&self, d: &Digest) -> Result<BlobReader> {
        self.open_blob_at(d, 0)
    }

    /// Open a committed blob for reading from `offset` (a `Range` request).
    pub fn open_blob_at(&self, d: &Digest, offset: u64) -> Result<BlobReader> {
        if self.record(d)?.is_none() {
            return Err(Error::NotFound(d.clone()));
        }
        self.backend.open(d, offset)
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
            .map_err(|source| Error::Read {
                digest: d.clone(),
                source,
            })?;
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
            return check_size(digest, size, rec.size).map(|()| PutOutcome::Present);
        }
        let staged = self.stage(lease, digest, size, reader, true)?;
        let name = staged.name().to_string();
        let r = self.commit(lease, digest, size, media_type, Some(staged), None);
        self.ingests.remove(name.as_bytes())?;
        r.map(|_| PutOutcome::Written)
    }

    /// Stage `size` bytes from `reader` with the backend, hashing them on the way and
    /// stopping past `size`; seal them once digest and size match (or, with `durable`
    /// false, only finish them: an ingest batch seals its writes together before it
    /// publishes any). The staged write is recorded in `ingests` (under its backend name)
    /// for as long as it exists, so a killed process's leftovers are found again. On any
    /// error the staged bytes are gone.
    pub(crate) fn stage(
        &self,
        lease: &Lease,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
        durable: bool,
    ) -> Result<Box<dyn Staged>> {
        let unique = format!("{:016x}", rand::random::<u64>());
        let mut staged = self.backend.stage(digest, size, &unique)?;
        let name = staged.name().to_string();
        let rec = IngestRecord {
            lease: lease.id,
            digest: digest.to_string(),
            size,
            created: now(),
        };
        let recorded = self
            .ingests
            .insert(name.as_bytes(), record::encode(&rec))
            .and_then(|_| {
                // A killed multipart upload is found again only through this record.
                if staged.needs_durable_record() {
                    self.db.flush().map(|_| ())
                } else {
                    Ok(())
                }
            });
        if let Err(e) = recorded {
            staged.abort();
            return Err(e.into());
        }
        let result = (|| {
            let (seen, actual) = if size >= HASH_THREAD_MIN {
                copy_hashing_aside(reader, staged.as_mut(), digest, size)?
            } else {
                copy_hashing(reader, staged.as_mut(), digest, size)?
            };
            if seen != size {
                return Err(Error::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: seen,
                    truncated: false,
                });
            }
            if &actual != digest {
                return Err(Error::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            if durable {
                staged.seal()
            } else {
                staged.finish()
            }
        })();
        match result {
            Ok(()) => Ok(staged),
            Err(e) => {
                staged.abort();
                self.ingests.remove(name.as_bytes())?;
                Err(e)
            }
        }
    }

    /// Publish a verified staged write and commit its record (and, for manifests, its
    /// edges) in one transaction, after the publish is durable.
    pub(crate) fn commit(
        &self,
        lease: &Lease,
        digest: &Digest,
        size: u64,
        media_type: &str,
        staged: Option<Box<dyn Staged>>,
        manifest: Option<(&ManifestView, bool)>,
    ) -> Result<()> {
        let item = Pending {
            digest: digest.clone(),
            size,
            media_type: media_type.to_string(),
            staged,
            manifest: manifest.map(|(v, s)| (v.clone(), s)),
        };
        self.commit_items(lease, vec![item])
    }

    /// Commit several verified items as one: seal every staged write (in parallel, so
    /// their fsyncs overlap), publish them, make the publishes durable with one
    /// [`Backend::sync`](crate::backend::Backend::sync), then commit every record (and
    /// manifest edges) in one transaction and one flush. Items are committed in order, so
    /// a manifest may name children earlier in the same list. Either all records commit
    /// or none does; refused bytes are taken back out.
    pub(crate) fn commit_items(&self, lease: &Lease, mut items: Vec<Pending>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let _s = self.stripes(items.iter().map(|i| &i.digest));
        let _g = self.gate_shared();
        let epoch = self.epoch()?;
        // Which items bring bytes (the rest only commit a record over bytes in place).
        let published: Vec<bool> = items.iter().map(|i| i.staged.is_some()).collect();
        let mut staged: Vec<Box<dyn Staged>> =
            items.iter_mut().filter_map(|i| i.staged.take()).collect();
        if !staged.is_empty() {
            let sealed = seal_all(&mut staged);
            if let Err(e) = sealed {
                for s in staged {
                    s.abort();
                }
                return Err(e);
            }
            // A failed publish leaves nothing visible for itself; the ones that succeeded
            // are taken back out below, as a refused transaction's are.
            if let Some(e) = publish_all(staged).into_iter().find_map(|r| r.err()) {
                self.take_back(&items, &published)?;
                return Err(e);
            }
            self.backend.sync()?;
            static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            crate::fault::reached("ingest.after_publish", crate::fault::count(&COMMITS));
        }
        let t = now();
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
            for item in &items {
                commit_one(blobs, edges, referrers, item, epoch, t)?;
                let mut hold_key = lease.id.to_be_bytes().to_vec();
                hold_key.extend(item.digest.to_key());
                holds.insert(hold_key, &[record::SCHEMA_VERSION][..])?;
            }
            Ok(())
        });
        if let Err(e) = committed {
            // The bytes were published before the transaction refused them (a missing
            // child, a size disagreement, a released lease): take them back out, or they
            // stay as orphans that verify reports. Only where no record names the digest:
            // under the stripe, a record here means the bytes are someone else's blob.
            // Never on a replica: the bytes under the digest are the writer's.
            self.take_back(&items, &published)?;
            return Err(e.into());
        }
        self.db.flush()?;
        for item in &items {
            if let Some((view, _)) = &item.manifest {
                self.summarize_committed(&item.digest, view);
            }
        }
        Ok(())
    }

    /// Delete the published bytes of `items` that no record names (a refused or failed
    /// commit's), under the stripes the caller holds: a record means the bytes are someone
    /// else's blob. Never on a replica: the bytes under the digest are the writer's.
    fn take_back(&self, items: &[Pending], published: &[bool]) -> Result<()> {
        if self.is_replica() {
            return Ok(());
        }
        for (item, _) in items.iter().zip(published).filter(|(_, p)| **p) {
            if self.blobs.contains_key(item.digest.to_key())? {
                continue;
            }
            if let Err(rm) = self.backend.delete(&item.digest) {
                tracing::warn!("removing refused {}: {rm}", item.digest);
            }
        }
        Ok(())
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
}

/// A blob the store (or a batch) has already: refused when declared with another size.
pub(crate) fn check_size(digest: &Digest, expected: u64, actual: u64) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    Err(Error::SizeMismatch {
        digest: digest.clone(),
        expected,
        actual,
        truncated: false,
    })
}

/// One verified item on its way into the store: its bytes staged (or already in place),
/// and for a manifest its parsed view and whether it may be sparse.
pub(crate) struct Pending {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) media_type: String,
    pub(crate) staged: Option<Box<dyn Staged>>,
    pub(crate) manifest: Option<(ManifestView, bool)>,
}

/// How many threads seal or publish a batch's writes: each seal of a local file is an
/// fsync, each publish to a bucket a request; overlapping them lets the file system commit
/// the barriers together and the bucket answer the requests together.
const WORKERS: usize = 8;

/// `f` applied to every item, on up to `workers` scoped threads (each taking a run of
/// items in turn); the results in the items' order.
pub(crate) fn on_workers<T: Send, R: Send>(
    items: Vec<T>,
    workers: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(workers.max(1));
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut it = items.into_iter();
    loop {
        let run: Vec<T> = it.by_ref().take(per).collect();
        if run.is_empty() {
            break;
        }
        runs.push(run);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || run.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles.into_iter().flat_map(join).collect()
    })
}

/// A scoped thread's result; its panic goes on in the caller.
pub(crate) fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Seal every staged write, a few at a time on scoped threads.
fn seal_all(staged: &mut [Box<dyn Staged>]) -> Result<()> {
    on_workers(staged.iter_mut().collect(), WORKERS, |s| s.seal())
        .into_iter()
        .collect()
}

/// Publish every sealed write, a few at a time on scoped threads; one result per write.
fn publish_all(staged: Vec<Box<dyn Staged>>) -> Vec<Result<()>> {
    on_workers(staged, WORKERS, |s| s.publish())
}

/// Write one item's record (and a manifest's edges and referrer link) inside the commit
/// transaction. A manifest's children must be recorded by now, earlier in the same
/// transaction or before it.
fn commit_one(
    blobs: &TransactionalTree,
    edges: &TransactionalTree,
    referrers: &TransactionalTree,
    item: &Pending,
    epoch: u64,
    t: u64,
) -> std::result::Result<(), ConflictableTransactionError<Error>> {
    let digest = &item.digest;
    let manifest = item.manifest.as_ref();
    let sparse = manifest.is_some_and(|(_, s)| *s);
    let subject = manifest.and_then(|(v, _)| v.subject.clone());
    if let Some((view, _)) = manifest {
        for c in view.children() {
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
            let e = record::encode_edge(required, role_code(c.role), c.descriptor.size);
            edges.insert(edge_key(digest, d), e)?;
        }
    }
    if let Some(s) = &subject {
        referrers.insert(edge_key(&s.digest, digest), &[record::SCHEMA_VERSION][..])?;
    }
    let key = digest.to_key();
    let mut r = BlobRecord {
        size: item.size,
        media_type: item.media_type.clone(),
        manifest: manifest.is_some(),
        created: t,
        touched: epoch,
        linked: false,
        subject: subject.as_ref().map(|s| s.digest.to_string()),
        artifact_type: manifest.and_then(|(v, _)| v.effective_artifact_type()),
    };
    if let Some(old) = blobs.get(&key)? {
        let old: BlobRecord = tx_decode("blobs", &old)?;
        r.created = old.created;
        r.linked = old.linked;
        if !r.manifest && !old.media_type.is_empty() {
            r.media_type = old.media_type;
        }
    }
    blobs.insert(key.as_slice(), record::encode(&r))?;
    Ok(())
}
