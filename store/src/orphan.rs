//! Garbage that no reachability decides: published bytes no record names (orphans: a kill
//! between publish and commit, or a GC killed between its flush and its deletes), and
//! staged writes whose lease is gone. GC, verify and recovery after a crash sweep them.

use std::collections::HashSet;
use std::time::Duration;

use crate::error::Result;
use crate::record::{self, IngestRecord};
use crate::store::Store;
use sealift_oci::digest::Digest;

/// Answers "had this key a record a moment ago?" from something the caller holds (GC's
/// mark), so the sweep looks up only the keys it does not know.
pub(crate) type Recorded<'a> = dyn Fn(&[u8]) -> bool + 'a;

impl Store {
    /// Published bytes that no record names, older than `grace` (bytes a put published a
    /// moment ago are about to be committed). Removed unless `dry_run`. The listing is
    /// paged by the backend, and only the orphans are kept.
    pub(crate) fn sweep_orphan_files(&self, dry_run: bool, grace: Duration) -> Result<Vec<String>> {
        self.sweep_orphans(dry_run, grace, None)
    }

    /// [`Store::sweep_orphan_files`], told by `recorded` which keys had a record a moment
    /// ago (GC's mark): those are kept without a lookup. Only keys it does not know are
    /// looked up, under their stripe.
    pub(crate) fn sweep_orphans(
        &self,
        dry_run: bool,
        grace: Duration,
        recorded: Option<&Recorded<'_>>,
    ) -> Result<Vec<String>> {
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
            let key = item.digest.as_ref().map(Digest::to_key);
            if let (Some(k), Some(known)) = (&key, recorded) {
                if known(k) {
                    return Ok(true);
                }
            }
            // Only a grace period needs the time (a stat per file, where blobs are files).
            if !grace.is_zero() {
                match self.backend.modified(&item) {
                    Ok(m) if m <= cutoff => {}
                    Ok(_) => return Ok(true),
                    // Gone since the listing (or unreadable): the next sweep looks again.
                    Err(e) => {
                        tracing::debug!("{}: {e}", item.name);
                        return Ok(true);
                    }
                }
            }
            // Hold the digest's stripe so a put between publish and commit is not mistaken
            // for an orphan.
            let _s = item.digest.as_ref().map(|d| self.stripe(d));
            let orphan = match &key {
                Some(k) => !self.blobs.contains_key(k)?,
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

    pub(crate) fn sweep_stale_ingests(&self, live: &HashSet<u64>, dry_run: bool) -> Result<usize> {
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
