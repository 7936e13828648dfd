//! Garbage collection by reachability.
//!
//! Roots: tags, pins, what unexpired leases hold, live ingests, plus two grace rules:
//! blobs never linked by anything and referrers whose subject is absent live for a grace
//! period after they arrive. Edges: index → manifests, manifest → config and layers, and
//! subject → referrer (a live subject keeps its SBOMs and signatures; a referrer never keeps
//! its subject).
//!
//! GC runs while other threads write: it bumps the epoch (the only exclusive moment), marks,
//! then deletes candidates one by one, each in its own transaction that re-checks the
//! record's epoch stamp. Anything held, linked or tagged after the bump carries the new
//! epoch and is skipped.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::backend::Location;
use crate::error::{Error, Result};
use crate::record::{self, now, BlobRecord, IngestRecord, LeaseRecord};
use crate::store::{Lease, Store};
use sealift_oci::digest::Digest;

/// How GC behaves.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// List what would go without deleting anything.
    pub dry_run: bool,
    /// How long a blob nothing has ever linked, or a referrer whose subject is absent,
    /// is kept after it arrived.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
        }
    }
}

/// One collected (or collectable) item.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// What a GC run did (or would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Items removed (or that would be).
    pub removed: Vec<Collected>,
    /// Their bytes.
    pub bytes: u64,
    /// Items kept only by a grace period.
    pub kept_by_grace: usize,
    /// Items that a concurrent writer touched after the mark, so were spared.
    pub spared_by_writer: usize,
    /// Blob files (or objects) with no record, older than the grace period, removed (or
    /// that would be).
    pub orphan_files: usize,
    /// Partial ingest files of dead leases, removed (or that would be).
    pub stale_ingests: usize,
    /// Reachable items kept.
    pub live: usize,
}

/// Removed records made durable per batch before their files go: a flush per batch
/// instead of per record, and a crash loses at most one batch of unlinks (the files stay
/// as orphans, swept on the next open).
const UNLINK_BATCH: usize = 256;

impl Store {
    /// Collect what nothing reaches.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let t = now();
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        // Bump the epoch before reading any root, leases included: a lease created after
        // the scan below then only holds or links things stamped with the new epoch, which
        // the delete re-check spares. (Bumping after the scan left a gap where a new
        // lease's holds were ignored and its stamps carried the old epoch.)
        let epoch = {
            let _x = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let e = self.epoch()? + 1;
            self.meta.insert(b"epoch", &e.to_be_bytes())?;
            e
        };
        // Expired timed leases stop holding now.
        let mut live_leases = HashSet::new();
        for item in self.leases.iter() {
            let (k, v) = item?;
            let id = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            let l: LeaseRecord = record::decode("leases", &v)?;
            if l.expires.is_some_and(|e| e <= t) {
                if !opts.dry_run {
                    self.release(Lease { id })?;
                }
            } else {
                live_leases.insert(id);
            }
        }

        let mut marked: HashSet<Digest> = HashSet::new();
        let mut stack: Vec<Digest> = Vec::new();
        for tag in self.tags()? {
            stack.push(tag.digest);
        }
        stack.extend(self.pins()?);
        for item in self.holds.iter() {
            let (k, _) = item?;
            let id =
                u64::from_be_bytes(k.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
            if live_leases.contains(&id) {
                if let Some((d, _)) = Digest::from_key(&k[8..]) {
                    stack.push(d);
                }
            }
        }
        for item in self.ingests.iter() {
            let (_, v) = item?;
            let r: IngestRecord = record::decode("ingests", &v)?;
            if live_leases.contains(&r.lease) {
                if let Ok(d) = r.digest.parse() {
                    stack.push(d);
                }
            }
        }
        let grace = opts.grace.as_secs();
        for item in self.records() {
            let (d, rec) = item?;
            let fresh = t.saturating_sub(rec.created) < grace;
            let orphan_referrer = match &rec.subject {
                Some(s) => s
                    .parse::<Digest>()
                    .ok()
                    .is_none_or(|s| !self.blobs.contains_key(s.to_key()).unwrap_or(false)),
                None => false,
            };
            if fresh && (!rec.linked || orphan_referrer) {
                report.kept_by_grace += 1;
                stack.push(d);
            }
        }

        while let Some(d) = stack.pop() {
            if !marked.insert(d.clone()) {
                continue;
            }
            for e in self.edges(&d)? {
                if !marked.contains(&e.child) {
                    stack.push(e.child);
                }
            }
            for r in self.referrers(&d)? {
                if !marked.contains(&r) {
                    stack.push(r);
                }
            }
        }

        let mut candidates: Vec<(Digest, BlobRecord)> = Vec::new();
        for item in self.records() {
            let (d, rec) = item?;
            if marked.contains(&d) {
                report.live += 1;
            } else {
                candidates.push((d, rec));
            }
        }

        if opts.dry_run {
            for (d, rec) in candidates {
                report.bytes += rec.size;
                report.removed.push(Collected {
                    digest: d,
                    size: rec.size,
                    media_type: rec.media_type,
                });
            }
        } else {
            // Parents before children: a crash part-way then never leaves a manifest whose
            // required child is gone (which verify would call a broken image).
            let candidates = self.parents_first(candidates)?;
            // Records go first and are made durable (flushed) before their files are
            // unlinked, a batch at a time: a crash then leaves at worst a file without a
            // record (an orphan, swept on the next open), never a record without its file.
            let mut pending: Vec<Digest> = Vec::new();
            let mut deleted: u64 = 0;
            let mut unlinked: u64 = 0;
            for (d, _) in candidates {
                match self.delete_record_if_untouched(&d, epoch)? {
                    Some(rec) => {
                        deleted += 1;
                        crate::fault::reached("gc.after_delete", deleted);
                        report.bytes += rec.size;
                        report.removed.push(Collected {
                            digest: d.clone(),
                            size: rec.size,
                            media_type: rec.media_type,
                        });
                        pending.push(d);
                    }
                    None => report.spared_by_writer += 1,
                }
                if pending.len() >= UNLINK_BATCH {
                    self.unlink_removed(&mut pending, &mut unlinked)?;
                }
            }
            self.unlink_removed(&mut pending, &mut unlinked)?;
        }

        // Local files are only ever published by this process (the store's lock), under the
        // digest's stripe, so no grace is needed; a shared bucket may hold what another
        // process published a moment ago and is about to record.
        let orphan_grace = match self.backend.location() {
            Location::Local => Duration::ZERO,
            Location::S3 { .. } => opts.grace,
        };
        report.orphan_files = self.sweep_orphan_files(opts.dry_run, orphan_grace)?.len();
        report.stale_ingests = self.sweep_stale_ingests(&live_leases, opts.dry_run)?;
        if !opts.dry_run {
            self.db.flush()?;
        }
        Ok(report)
    }

    /// Delete one record (and the edges it owned) unless a writer stamped it with `epoch`
    /// or later. Its file stays until [`Store::unlink_removed`].
    fn delete_record_if_untouched(&self, d: &Digest, epoch: u64) -> Result<Option<BlobRecord>> {
        let _s = self.stripe(d);
        let key = d.to_key();
        let removed = self.blobs.transaction(|b| {
            let Some(v) = b.get(&key)? else {
                return Ok(None);
            };
            let rec: BlobRecord = record::decode("blobs", &v)
                .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
            if rec.touched >= epoch {
                return Ok(None);
            }
            b.remove(key.as_slice())?;
            Ok(Some(rec))
        });
        let removed: Option<BlobRecord> = removed.map_err(Error::from)?;
        if let Some(rec) = &removed {
            self.forget_edges(d, rec)?;
        }
        Ok(removed)
    }

    /// Make the removals of `pending` durable, then unlink their files. A put of the same
    /// digest may have committed it again since (it renames its own copy into place under
    /// the stripe lock): that file is kept.
    fn unlink_removed(&self, pending: &mut Vec<Digest>, unlinked: &mut u64) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        self.db.flush()?;
        // A replica's records name the writer's objects: it drops records, never objects.
        if self.is_replica() {
            pending.clear();
            return Ok(());
        }
        for d in pending.drain(..) {
            let _s = self.stripe(&d);
            if self.blobs.contains_key(d.to_key())? {
                continue;
            }
            *unlinked += 1;
            crate::fault::reached("gc.before_unlink", *unlinked);
            self.backend.delete(&d)?;
            crate::fault::reached("gc.after_unlink", *unlinked);
        }
        Ok(())
    }

    /// Order `candidates` so that every manifest comes before the children it links among
    /// them. Nothing live links a candidate (or it would be marked), so deleting in this
    /// order keeps every remaining manifest complete at each step.
    fn parents_first(
        &self,
        candidates: Vec<(Digest, BlobRecord)>,
    ) -> Result<Vec<(Digest, BlobRecord)>> {
        let index: HashMap<Digest, usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, (d, _))| (d.clone(), i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
        let mut parents = vec![0usize; candidates.len()];
        for (i, (d, rec)) in candidates.iter().enumerate() {
            if !rec.manifest {
                continue;
            }
            for e in self.edges(d)? {
                if let Some(&j) = index.get(&e.child) {
                    children[i].push(j);
                    parents[j] += 1;
                }
            }
        }
        // Kahn's algorithm; iterative, so a deep chain cannot overflow the stack.
        let mut ready: Vec<usize> = (0..candidates.len()).filter(|&i| parents[i] == 0).collect();
        let mut order = Vec::with_capacity(candidates.len());
        let mut placed = vec![false; candidates.len()];
        while let Some(i) = ready.pop() {
            placed[i] = true;
            order.push(i);
            for &j in &children[i] {
                parents[j] -= 1;
                if parents[j] == 0 {
                    ready.push(j);
                }
            }
        }
        // Content addressing rules out cycles; should a corrupt graph hold one, its nodes
        // still go, last.
        order.extend((0..candidates.len()).filter(|&i| !placed[i]));
        let mut slots: Vec<Option<(Digest, BlobRecord)>> =
            candidates.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }

    /// Remove the edges a deleted manifest owned (its children and its referrer link).
    pub(crate) fn forget_edges(&self, d: &Digest, rec: &BlobRecord) -> Result<()> {
        if rec.manifest {
            let mut batch = sled::Batch::default();
            for item in self.edges.scan_prefix(d.to_key()) {
                batch.remove(item?.0);
            }
            self.edges.apply_batch(batch)?;
        }
        if let Some(s) = rec.subject.as_ref().and_then(|s| s.parse::<Digest>().ok()) {
            self.referrers.remove(crate::record::edge_key(&s, d))?;
        }
        Ok(())
    }

    /// Published bytes that no record names, older than `grace` (bytes a put published a
    /// moment ago are about to be committed). Removed unless `dry_run`. The listing is
    /// paged by the backend, and only the orphans are kept.
    pub(crate) fn sweep_orphan_files(&self, dry_run: bool, grace: Duration) -> Result<Vec<String>> {
        // A replica shares the writer's bucket, where every object it has no record of is
        // the writer's: none is its orphan (not for GC, verify or recovery).
        if self.is_replica() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let cutoff = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        self.backend.list(&mut |item| {
            if item.modified > cutoff {
                return Ok(true);
            }
            // Hold the digest's stripe so a put between publish and commit is not mistaken
            // for an orphan.
            let _s = item.digest.as_ref().map(|d| self.stripe(d));
            let orphan = match &item.digest {
                Some(d) => self.record(d)?.is_none(),
                None => true,
            };
            if orphan {
                if !dry_run {
                    match &item.digest {
                        Some(d) => self.backend.delete(d)?,
                        None => self.backend.delete_listed(&item)?,
                    }
                }
                out.push(item.name);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn sweep_stale_ingests(&self, live: &HashSet<u64>, dry_run: bool) -> Result<usize> {
        let mut n = 0;
        for item in self.ingests.iter() {
            let (k, v) = item?;
            let r: IngestRecord = record::decode("ingests", &v)?;
            if !live.contains(&r.lease) && !self.leases.contains_key(r.lease.to_be_bytes())? {
                n += 1;
                if !dry_run {
                    self.ingests.remove(&k)?;
                    self.backend.discard(&String::from_utf8_lossy(&k))?;
                }
            }
        }
        Ok(n)
    }
}
