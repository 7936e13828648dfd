//! Read replicas and adoption: a store whose blobs live in a bucket shared with another
//! store (the writer) records blobs that are already in the bucket instead of uploading
//! them again.
//!
//! A replica is a store of its own (its own metadata, its own lock) created on the
//! writer's bucket and prefix with the `blobs-role` meta key set to `replica`. Its metadata
//! follows the writer through an ordinary sync job; when that copy asks whether the store
//! has a blob, [`Store::hold_or_adopt`] finds the writer's object and commits a record for
//! it after a size check. The bytes were hashed when the writer published them under their
//! digest, and objects are only ever published under the digest they hash to, so a size
//! check is what a local `hold` does too (a stat, not a hash); `verify --full` re-hashes.
//!
//! The writer owns the bucket: a replica's GC drops records only and never deletes or
//! sweeps objects (see [`Store::is_replica`] in `gc.rs`), since the objects it would take
//! are the writer's.

use crate::kv::Transactional;

use crate::backend::Location;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::record::{self, now, BlobRecord};
use crate::store::Store;
use crate::tx::{abort, tx_decode};
use sealift_oci::digest::Digest;

/// Meta key naming the store's role on its bucket; absent means "the writer".
const ROLE_KEY: &[u8] = b"blobs-role";
const REPLICA: &[u8] = b"replica";

impl Store {
    /// Whether this store is a read replica on a bucket another store writes.
    pub fn is_replica(&self) -> bool {
        matches!(self.meta.get(ROLE_KEY), Ok(Some(v)) if v.as_slice() == REPLICA)
    }

    /// Make this store a read replica of the bucket it keeps its blobs in (`sealift init
    /// --blobs s3://… --replica`). Only a store on object storage can be one: local blob
    /// files are nobody else's. Idempotent.
    pub fn mark_replica(&self) -> Result<()> {
        let location = self.backend.location();
        if location == Location::Local {
            return Err(Error::BadLocation {
                location: location.to_string(),
                reason: "a replica shares a writer's bucket: create it with \
                         `--blobs s3://BUCKET/PREFIX` (the writer's)"
                    .into(),
            });
        }
        self.meta.insert(ROLE_KEY, REPLICA)?;
        self.db.flush()?;
        Ok(())
    }

    /// [`Store::hold`], and when the store has no record but its bucket already holds
    /// `size` bytes under `d` (published by the writer, or by an ingest killed before its
    /// commit), commit a record for them without copying a byte: held by `lease` and
    /// stamped with the epoch, exactly as a put's commit. Returns the record when the store
    /// has the blob afterwards. Stores with local blobs never adopt (their files are only
    /// ever written by their own ingest, which records them).
    pub fn hold_or_adopt(
        &self,
        lease: &Lease,
        d: &Digest,
        size: u64,
        media_type: &str,
    ) -> Result<Option<BlobRecord>> {
        if let Some(rec) = self.hold(lease, d)? {
            return Ok(Some(rec));
        }
        if self.backend.location() == Location::Local {
            return Ok(None);
        }
        // Stat and commit under the digest's stripe, so this process's GC cannot remove
        // the object between the two (its unlink and orphan sweep take the same stripe).
        let _s = self.stripe(d);
        match self.backend.stat(d) {
            Ok(Some(actual)) if actual == size => {}
            Ok(Some(actual)) => {
                tracing::warn!(
                    "{d}: the bucket holds {actual} bytes, the source says {size}; \
                     copying it again"
                );
                return Ok(None);
            }
            Ok(None) => return Ok(None),
            Err(e) => {
                // Not knowing is "not there": the copy then uploads the bytes itself.
                tracing::warn!("{d}: {e}");
                return Ok(None);
            }
        }
        let _g = self.gate_shared();
        let epoch = self.epoch()?;
        let key = d.to_key();
        let mut hold_key = lease.id.to_be_bytes().to_vec();
        hold_key.extend(&key);
        let fresh = BlobRecord {
            size,
            media_type: media_type.to_string(),
            manifest: false,
            created: now(),
            touched: epoch,
            linked: false,
            subject: None,
            artifact_type: None,
        };
        let rec =
            (&self.blobs, &self.holds, &self.leases).transaction(|(blobs, holds, leases)| {
                if leases.get(lease.id.to_be_bytes())?.is_none() {
                    return Err(abort(Error::LeaseGone(lease.id)));
                }
                // Someone committed it since the hold above: keep theirs, touched.
                let rec = match blobs.get(&key)? {
                    Some(v) => {
                        let mut r: BlobRecord = tx_decode("blobs", &v)?;
                        r.touched = epoch;
                        r
                    }
                    None => fresh.clone(),
                };
                if rec.size != size {
                    return Err(abort(Error::SizeMismatch {
                        digest: d.clone(),
                        expected: size,
                        actual: rec.size,
                        truncated: false,
                    }));
                }
                blobs.insert(key.as_slice(), record::encode(&rec))?;
                holds.insert(hold_key.as_slice(), &[record::SCHEMA_VERSION][..])?;
                Ok(rec)
            })?;
        self.db.flush()?;
        tracing::debug!("{d}: adopted from {}", self.backend.describe());
        Ok(Some(rec))
    }
}
