//! Garbage collection by reachability.
//!
//! Roots: tags, pins, what unexpired leases hold, live ingests, plus two grace rules:
//! blobs never linked by anything and referrers whose subject is absent live for a grace
//! period after they arrive. Edges: index → manifests, manifest → config and layers, and
//! subject → referrer (a live subject keeps its SBOMs and signatures; a referrer never keeps
//! its subject).
//!
//! GC runs while other threads write: it bumps the epoch (the only exclusive moment), marks,
//! then deletes candidates a chunk at a time ([`crate::sweep`]), re-checking every record's
//! epoch stamp as it goes. Anything held, linked or tagged after the bump carries the new
//! epoch and is skipped.
//!
//! At scale (100k records) the mark works on raw record keys, reads records without
//! allocating ([`BlobRecordRef`]), follows edges only out of manifests (as
//! [`Store::walk`] does), and reads the referrers tree once; deletion keeps only a chunk
//! of candidates in memory besides the mark set (manifests first, parents before children,
//! then plain blobs found by a second pass over the records).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::backend::Location;
use crate::error::{Error, Result};
use crate::graph::key_digest;
use crate::record::{self, now, BlobRecord, BlobRecordRef, IngestRecord, LeaseRecord, TagRecord};
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

/// A record's key in the `blobs` tree ([`Digest::to_key`]): the mark works on these, not on
/// parsed digests.
pub(crate) type Key = Vec<u8>;

/// What the mark knows of one record.
#[derive(Clone, Copy)]
struct Node {
    /// Only manifests have edges to follow.
    manifest: bool,
    /// Reached from a root.
    marked: bool,
}

/// Every record the mark saw (one pass over `blobs`), by key.
type Nodes = HashMap<Key, Node>;

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
            self.meta.insert(b"epoch", e.to_be_bytes())?;
            e
        };
        // Expired timed leases stop holding now.
        let mut live_leases = HashSet::new();
        for item in self.leases.iter() {
            let (k, v) = item?;
            let id = u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8]));
            let l: LeaseRecord = record::decode("leases", &v)?;
            if l.expires.is_some_and(|e| e <= t) {
                if !opts.dry_run {
                    self.release(Lease { id })?;
                }
            } else {
                live_leases.insert(id);
            }
        }

        let mut stack = self.roots(&live_leases)?;
        // The only pass over the records: which exist, which are manifests, and the grace
        // roots. Records stored after it are not candidates (they carry the new epoch).
        let grace = opts.grace.as_secs();
        let mut nodes: Nodes = HashMap::new();
        for item in self.blobs.iter() {
            let (k, v) = item?;
            let rec: BlobRecordRef<'_> = record::decode_ref("blobs", &v)?;
            let fresh = t.saturating_sub(rec.created) < grace;
            if fresh && (!rec.linked || self.subject_absent(rec.subject)?) {
                report.kept_by_grace += 1;
                stack.push(k.to_vec());
            }
            let node = Node {
                manifest: rec.manifest,
                marked: false,
            };
            nodes.insert(k.to_vec(), node);
        }
        self.mark(&mut nodes, stack)?;

        // The unreached manifests are ordered (they are few); the plain blobs go after
        // them, a chunk at a time, in any order.
        let mut unreached_manifests: Vec<Key> = Vec::new();
        for (k, n) in &nodes {
            if n.marked {
                report.live += 1;
            } else if n.manifest {
                unreached_manifests.push(k.clone());
            }
        }

        if opts.dry_run {
            let mut keys: Vec<&Key> = nodes.iter().filter(|n| !n.1.marked).map(|n| n.0).collect();
            keys.sort();
            for k in keys {
                let Some(rec) = self.record(&key_digest(k)?)? else {
                    continue;
                };
                report.bytes += rec.size;
                report.removed.push(Collected {
                    digest: key_digest(k)?,
                    size: rec.size,
                    media_type: rec.media_type,
                });
            }
        } else {
            // Parents before children: a crash part-way then never leaves a manifest whose
            // required child is gone (which verify would call a broken image). Manifests
            // first, in that order among themselves, then the plain blobs, which link
            // nothing.
            let ordered = self.parents_first(unreached_manifests, &nodes)?;
            let plain = nodes
                .iter()
                .filter(|(_, n)| !n.marked && !n.manifest)
                .map(|(k, _)| k.as_slice());
            self.delete_unreached(&ordered, plain, epoch, &mut report)?;
        }

        // Local files are only ever published by this process (the store's lock), under the
        // digest's stripe, so no grace is needed; a shared bucket may hold what another
        // process published a moment ago and is about to record.
        let orphan_grace = match self.backend.location() {
            Location::Local => Duration::ZERO,
            Location::S3 { .. } => opts.grace,
        };
        // The mark's records answer "is it recorded?" for almost every listed file (marked
        // ones are kept; the unmarked ones this run did not delete, spared, are kept too);
        // only the rest are looked up.
        report.orphan_files = self
            .sweep_orphans(
                opts.dry_run,
                orphan_grace,
                Some(&|k: &[u8]| nodes.contains_key(k)),
            )?
            .len();
        drop(nodes);
        report.stale_ingests = self.sweep_stale_ingests(&live_leases, opts.dry_run)?;
        if !opts.dry_run {
            self.db.flush()?;
        }
        Ok(report)
    }

    /// Mark what `stack` reaches: edges out of manifests, and subject → referrer.
    fn mark(&self, nodes: &mut Nodes, mut stack: Vec<Key>) -> Result<()> {
        let referrers = self.referrers_by_subject()?;
        // Roots that are not records (a tag whose target is gone) can still have
        // referrers; they are visited once.
        let mut absent: HashSet<Key> = HashSet::new();
        while let Some(k) = stack.pop() {
            let manifest = match nodes.get_mut(&k) {
                Some(n) if n.marked => continue,
                Some(n) => {
                    n.marked = true;
                    n.manifest
                }
                None if absent.contains(&k) => continue,
                None => false,
            };
            if manifest {
                for item in self.edges.scan_prefix(&k) {
                    let (ek, _) = item?;
                    let child = &ek[k.len()..];
                    if nodes.get(child).is_none_or(|n| !n.marked) {
                        stack.push(child.to_vec());
                    }
                }
            }
            if let Some(rs) = referrers.get(&k) {
                stack.extend(rs.iter().cloned());
            }
            if !nodes.contains_key(&k) {
                absent.insert(k);
            }
        }
        Ok(())
    }

    /// The roots that are not records' own grace: tags, pins, what live leases hold and
    /// live ingests are writing, as keys.
    fn roots(&self, live_leases: &HashSet<u64>) -> Result<Vec<Key>> {
        let mut stack: Vec<Key> = Vec::new();
        for item in self.tags.iter() {
            let (_, v) = item?;
            let r: TagRecord = record::decode("tags", &v)?;
            let d: Digest = r.digest.parse().map_err(|_| Error::Corrupt {
                tree: "tags",
                reason: format!("bad digest {}", r.digest),
            })?;
            stack.push(d.to_key());
        }
        for item in self.pins.iter() {
            stack.push(item?.0.to_vec());
        }
        for item in self.holds.iter() {
            let (k, _) = item?;
            let id =
                u64::from_be_bytes(k.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
            if live_leases.contains(&id) && k.len() > 8 {
                stack.push(k[8..].to_vec());
            }
        }
        for item in self.ingests.iter() {
            let (_, v) = item?;
            let r: IngestRecord = record::decode("ingests", &v)?;
            if live_leases.contains(&r.lease) {
                if let Ok(d) = r.digest.parse::<Digest>() {
                    stack.push(d.to_key());
                }
            }
        }
        Ok(stack)
    }

    /// Whether a referrer's subject is absent (or unreadable); `false` for a record that is
    /// not a referrer.
    fn subject_absent(&self, subject: Option<&str>) -> Result<bool> {
        let Some(s) = subject else {
            return Ok(false);
        };
        Ok(match s.parse::<Digest>() {
            Ok(s) => !self.blobs.contains_key(s.to_key())?,
            Err(_) => true,
        })
    }

    /// The referrers tree read once, as subject key → referrer keys: one entry per
    /// referrer, so small, and it spares a lookup per marked record.
    fn referrers_by_subject(&self) -> Result<HashMap<Key, Vec<Key>>> {
        let mut out: HashMap<Key, Vec<Key>> = HashMap::new();
        for item in self.referrers.iter() {
            let (k, _) = item?;
            let Some((_, n)) = Digest::from_key(&k) else {
                continue;
            };
            out.entry(k[..n].to_vec())
                .or_default()
                .push(k[n..].to_vec());
        }
        Ok(out)
    }

    /// Order the unreached manifests so that every one comes before the manifests it links
    /// among them (an index before its entries). Nothing live links a candidate (or it
    /// would be marked), so deleting in this order keeps every remaining manifest complete
    /// at each step. Only manifests have edges, so only they are looked at.
    fn parents_first(&self, candidates: Vec<Key>, nodes: &Nodes) -> Result<Vec<Key>> {
        let index: HashMap<&[u8], usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_slice(), i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
        let mut parents = vec![0usize; candidates.len()];
        for (i, k) in candidates.iter().enumerate() {
            for item in self.edges.scan_prefix(k) {
                let (ek, _) = item?;
                let child = &ek[k.len()..];
                if !nodes.get(child).is_some_and(|n| n.manifest) {
                    continue;
                }
                if let Some(&j) = index.get(child) {
                    children[i].push(j);
                    parents[j] += 1;
                }
            }
        }
        drop(index);
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
        let mut slots: Vec<Option<Key>> = candidates.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }

    /// Remove the edges a deleted manifest owned (its children and its referrer link).
    pub(crate) fn forget_edges(&self, d: &Digest, rec: &BlobRecord) -> Result<()> {
        if rec.manifest {
            let mut batch = crate::kv::Batch::default();
            for item in self.edges.scan_prefix(d.to_key()) {
                batch.remove(item?.0);
            }
            self.edges.apply_batch(batch)?;
            self.summaries.remove(d.to_key())?;
        }
        if let Some(s) = rec.subject.as_ref().and_then(|s| s.parse::<Digest>().ok()) {
            self.referrers.remove(crate::record::edge_key(&s, d))?;
        }
        Ok(())
    }
}
