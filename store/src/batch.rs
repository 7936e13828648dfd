//! Ingest batches: group commit for many small blobs and manifests.
//!
//! A lone [`Store::put_blob`] pays three barriers (fsync of the file, fsync of its
//! directory, the metadata flush) before the next blob starts. An [`IngestBatch`] stages and
//! verifies each item as it comes, exactly as a lone put does, but defers those barriers:
//! at [`IngestBatch::flush`] (or when the batch fills) it seals every staged file at once
//! on a few threads (their fsyncs overlap), publishes them, fsyncs each blob directory once,
//! and commits every record, and every manifest's edges, in one transaction and one flush.
//!
//! Blobs of 1 MiB or more are not batched: they commit on their own, one behind (see
//! [`ALONE`]), since their own data dominates their fsync and a killed import should keep
//! the layers it finished.
//!
//! The crash guarantees are a lone put's: nothing is recorded before its bytes are
//! verified and durable, and a kill at any point leaves either staged files under their
//! `ingests` records (removed when the store is next opened) or published files with no
//! record (orphans GC removes after grace). What changes is when a put becomes visible:
//! at the flush, not when `put_blob` returns. Items commit in the order they were put,
//! so a manifest may follow its children in the same batch.

use std::collections::HashMap;
use std::io::Read;

use crate::blob::{check_size, Pending, PutOutcome};
use crate::error::{Error, Result};
use crate::graph::{check_manifest, ManifestOptions, StoredManifest};
use crate::lease::Lease;
use crate::store::Store;
use sealift_oci::digest::Digest;

/// A batch flushes itself once it holds this many items...
const MAX_ITEMS: usize = 512;
/// ...or this many staged bytes (what a flush may have to fsync at once).
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Blobs this large commit on their own, one behind: their fsync is the data's, not a
/// barrier's, so batching gains little, and a killed import of large layers keeps every
/// layer it finished but the last (a re-run resumes there). Each is sealed on a thread of
/// its own while the next one streams in, so the disk writes one layer while the next is
/// read and hashed, and it is committed once that next one has arrived (or at the flush).
const ALONE: u64 = 1024 * 1024;

/// A large blob being sealed on its own thread: the thread gives its staged write back.
type Sealing = (
    std::thread::JoinHandle<Result<Box<dyn crate::backend::Staged>>>,
    Pending,
    String,
);

/// Puts that commit together. Dropping a batch without [`IngestBatch::finish`] discards
/// whatever it has not flushed.
pub struct IngestBatch<'s> {
    store: &'s Store,
    lease: Lease,
    items: Vec<Pending>,
    /// The `ingests` names of the staged writes in `items`.
    names: Vec<String>,
    /// Digests in `items`: their size, and whether they are committed as manifests.
    pending: HashMap<Digest, (u64, bool)>,
    bytes: u64,
    /// The last large blob, sealing (see [`ALONE`]).
    sealing: Option<Sealing>,
}

impl Store {
    /// Start a batch of puts held by `lease` (see [`IngestBatch`]).
    pub fn batch(&self, lease: &Lease) -> IngestBatch<'_> {
        IngestBatch {
            store: self,
            lease: *lease,
            items: Vec::new(),
            names: Vec::new(),
            pending: HashMap::new(),
            bytes: 0,
            sealing: None,
        }
    }
}

impl IngestBatch<'_> {
    /// Like [`Store::put_blob`]: read, hash and verify `size` bytes from `reader` (or not
    /// at all when the store or this batch has the digest). The blob is recorded at the
    /// next flush.
    pub fn put_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        media_type: &str,
        reader: &mut dyn Read,
    ) -> Result<PutOutcome> {
        if let Some(have) = self.hold(digest)? {
            return check_size(digest, size, have).map(|_| PutOutcome::Present);
        }
        if size >= ALONE {
            return self.put_large(digest, size, media_type, reader);
        }
        let staged = self.store.stage(&self.lease, digest, size, reader, false)?;
        static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        crate::fault::reached("batch.after_stage", crate::fault::count(&STAGED));
        self.push(
            Pending {
                digest: digest.clone(),
                size,
                media_type: media_type.to_string(),
                staged: Some(staged),
                manifest: None,
            },
            false,
        )?;
        Ok(PutOutcome::Written)
    }

    /// Like [`Store::put_manifest`]: the bytes are checked now (digest, size, JSON); the
    /// edges are checked and recorded at the next flush, where a required child must be
    /// in the store or earlier in the batch.
    pub fn put_manifest(
        &mut self,
        bytes: &[u8],
        opts: ManifestOptions<'_>,
    ) -> Result<StoredManifest> {
        let (digest, view) = check_manifest(bytes, &opts)?;
        let size = bytes.len() as u64;
        match self.pending.get(&digest) {
            Some(&(_, true)) => {
                return Ok(StoredManifest {
                    digest,
                    view,
                    outcome: PutOutcome::Present,
                })
            }
            // Pending as a plain blob: commit that first, so the record to upgrade exists.
            Some(&(_, false)) => self.flush()?,
            None => {}
        }
        let (staged, outcome) = match self.store.hold(&self.lease, &digest)? {
            Some(rec) if rec.manifest => {
                return Ok(StoredManifest {
                    digest,
                    view,
                    outcome: PutOutcome::Present,
                })
            }
            // Stored as a plain blob: only the graph is committed.
            Some(_) => (None, PutOutcome::Present),
            None => (
                Some(
                    self.store
                        .stage(&self.lease, &digest, size, &mut &bytes[..], false)?,
                ),
                PutOutcome::Written,
            ),
        };
        self.push(
            Pending {
                digest: digest.clone(),
                size,
                media_type: view.media_type.clone(),
                staged,
                manifest: Some((view.clone(), opts.sparse)),
            },
            true,
        )?;
        Ok(StoredManifest {
            digest,
            view,
            outcome,
        })
    }

    /// The size of `d` when the store has it (now held by this batch's lease) or the batch
    /// will record it at its next flush.
    pub fn hold(&mut self, d: &Digest) -> Result<Option<u64>> {
        if let Some(&(size, _)) = self.pending.get(d) {
            return Ok(Some(size));
        }
        Ok(self.store.hold(&self.lease, d)?.map(|r| r.size))
    }

    /// Stage a large blob, then seal it on a thread while the caller goes on; the one
    /// before it is committed first, so at most one is in flight.
    fn put_large(
        &mut self,
        digest: &Digest,
        size: u64,
        media_type: &str,
        reader: &mut dyn Read,
    ) -> Result<PutOutcome> {
        let mut staged = self.store.stage(&self.lease, digest, size, reader, false)?;
        let name = staged.name().to_string();
        // The previous one has had this blob's whole transfer to reach the disk.
        if let Err(e) = self.commit_sealing() {
            staged.abort();
            let _ = self.store.forget_ingests(&[name]);
            return Err(e);
        }
        let sealer = std::thread::Builder::new()
            .name("sealift-seal".into())
            .spawn(move || staged.seal().map(|()| staged));
        let sealer = match sealer {
            Ok(h) => h,
            Err(e) => {
                let _ = self.store.forget_ingests(&[name]);
                return Err(Error::io("starting a thread for", digest.to_string())(e));
            }
        };
        self.pending.insert(digest.clone(), (size, false));
        let item = Pending {
            digest: digest.clone(),
            size,
            media_type: media_type.to_string(),
            staged: None,
            manifest: None,
        };
        self.sealing = Some((sealer, item, name));
        Ok(PutOutcome::Written)
    }

    /// Wait for the large blob being sealed, and commit it on its own.
    fn commit_sealing(&mut self) -> Result<()> {
        let Some((sealer, mut item, name)) = self.sealing.take() else {
            return Ok(());
        };
        self.pending.remove(&item.digest);
        let r = match sealer.join() {
            Ok(Ok(staged)) => {
                item.staged = Some(staged);
                self.store.commit_items(&self.lease, vec![item])
            }
            // A failed seal dropped (and so removed) the staged write.
            Ok(Err(e)) => Err(e),
            Err(p) => std::panic::resume_unwind(p),
        };
        let forgot = self.store.forget_ingests(&[name]);
        r.and(forgot)
    }

    /// How many puts wait for the next flush.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits for a flush.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Make every put so far durable and recorded: one seal round, one directory sync, one
    /// transaction, one flush. On error none of them is recorded and their bytes are gone.
    pub fn flush(&mut self) -> Result<()> {
        self.commit_sealing()?;
        let items = std::mem::take(&mut self.items);
        let names = std::mem::take(&mut self.names);
        self.pending.clear();
        self.bytes = 0;
        let r = self.store.commit_items(&self.lease, items);
        let removed = self.store.forget_ingests(&names);
        r.and(removed)
    }

    /// Flush, and end the batch.
    pub fn finish(mut self) -> Result<()> {
        self.flush()
    }

    fn push(&mut self, item: Pending, manifest: bool) -> Result<()> {
        if let Some(s) = &item.staged {
            self.names.push(s.name().to_string());
        }
        self.bytes += item.staged.as_ref().map_or(0, |_| item.size);
        self.pending
            .insert(item.digest.clone(), (item.size, manifest));
        self.items.push(item);
        if self.items.len() >= MAX_ITEMS || self.bytes >= MAX_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

impl Drop for IngestBatch<'_> {
    fn drop(&mut self) {
        if let Some((sealer, _, name)) = self.sealing.take() {
            if let Ok(Ok(staged)) = sealer.join() {
                staged.abort();
            }
            self.names.push(name);
        }
        for item in self.items.drain(..) {
            if let Some(s) = item.staged {
                s.abort();
            }
        }
        let names = std::mem::take(&mut self.names);
        if let Err(e) = self.store.forget_ingests(&names) {
            tracing::warn!("discarding an unfinished ingest batch: {e}");
        }
    }
}

impl Store {
    /// Remove the `ingests` records of staged writes that are now published or gone.
    pub(crate) fn forget_ingests(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut b = crate::kv::Batch::default();
        for n in names {
            b.remove(n.as_bytes());
        }
        self.ingests.apply_batch(b)?;
        Ok(())
    }
}
