//! Leases: work in progress that holds what it wrote until released (or, for a timed lease,
//! until it expires), so GC never takes content a running copy still needs.

use std::time::Duration;

use crate::error::Result;
use crate::record::{self, now, IngestRecord, LeaseRecord};
use crate::store::Store;

/// Holds removed per batch when a lease is released.
const RELEASE_CHUNK: usize = 4096;

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

impl Store {
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
    /// reaches it; otherwise the next GC collects it). The holds go a chunk at a time, so a
    /// lease holding 100k blobs needs no more memory than one holding a thousand; the lease
    /// record goes last, so a crash part-way leaves a lease that holds less, which the next
    /// open (or release) finishes.
    pub fn release(&self, lease: Lease) -> Result<()> {
        let prefix = lease.id.to_be_bytes();
        loop {
            let mut batch = crate::kv::Batch::default();
            let mut n = 0;
            for item in self.holds.scan_prefix(prefix).keys().take(RELEASE_CHUNK) {
                batch.remove(item?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.holds.apply_batch(batch)?;
        }
        // Partial ingests are few (only what is being written), so a scan finds a lease's.
        for item in self.ingests.iter() {
            let (k, v) = item?;
            let r: IngestRecord = record::decode("ingests", &v)?;
            if r.lease == lease.id {
                self.ingests.remove(&k)?;
                if let Err(e) = self.backend.discard(&String::from_utf8_lossy(&k)) {
                    tracing::warn!("removing a released lease's partial blob: {e}");
                }
            }
        }
        self.leases.remove(prefix)?;
        Ok(())
    }
}
