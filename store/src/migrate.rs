//! Moving a store's blob bytes to another backend (`sealift migrate --blobs LOCATION`):
//! local files to an object store bucket, or back.
//!
//! The metadata stays where it is; only the bytes move, and the store's remembered location
//! is switched last. Each blob is streamed from the old backend, hashed while it passes and
//! published in the new one only when digest and size match, so nothing unverified lands.
//! Progress (the last record copied, in key order) is made durable every batch, so a killed
//! migration resumes where it stopped. Until the switch, the store keeps working on the old
//! backend; after it, the old copies are removed, and a migration killed during that
//! cleanup finishes it when run again.

use crate::backend::{Backend, Location};
use crate::error::{Error, Result};
use crate::store::Store;
use sealift_oci::digest::Digest;
use sealift_oci::verify::Verifier;

/// Records copied between two durable progress marks.
const BATCH: usize = 64;

/// Metadata keys: where a migration in progress is going, the last record copied, and an
/// old location whose copies are still to be removed.
const TARGET: &[u8] = b"migrate-target";
const DONE_UPTO: &[u8] = b"migrate-done-upto";
const CLEANUP: &[u8] = b"migrate-cleanup";

/// What a migration did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MigrateReport {
    /// Where the blobs were.
    pub from: String,
    /// Where they are now.
    pub to: String,
    /// Blobs copied (and verified) in this run.
    pub copied: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs an earlier, interrupted run had copied already.
    pub resumed: usize,
    /// Old copies removed after the switch.
    pub removed: usize,
}

/// Progress while migrating: blobs done, blobs in all, bytes copied.
pub type MigrateProgress<'a> = &'a dyn Fn(usize, usize, u64);

impl Store {
    /// Move every blob to `to` (opened as `dest`), verified, then switch the store to it.
    /// Resumable: run again after a kill, with the same target.
    pub fn migrate(
        &mut self,
        to: &Location,
        dest: Box<dyn Backend>,
        progress: Option<MigrateProgress<'_>>,
    ) -> Result<MigrateReport> {
        if self.is_replica() {
            return Err(Error::BadLocation {
                location: to.to_string(),
                reason: "this store is a read replica: its bucket's objects are the writer's; \
                         migrate the writer, and create replicas anew"
                    .into(),
            });
        }
        let from = self.backend.location();
        let mut report = MigrateReport {
            from: from.to_string(),
            to: to.to_string(),
            ..Default::default()
        };
        if &from == to {
            // Already there: finish a cleanup an earlier run was killed in.
            if let Some(old) = self.meta.get(CLEANUP)? {
                let old: Location = String::from_utf8_lossy(&old).parse()?;
                report.from = old.to_string();
                let old = crate::backend::open::connect(&self.root, &old)?;
                report.removed = self.remove_old_copies(old.as_ref())?;
            }
            return Ok(report);
        }
        if let Some(pending) = self.meta.get(TARGET)? {
            let pending = String::from_utf8_lossy(&pending).into_owned();
            if pending != to.to_string() {
                return Err(Error::LocationMismatch {
                    path: self.root.clone(),
                    actual: format!("{from} (a migration to {pending} is unfinished)"),
                    requested: to.to_string(),
                });
            }
        } else {
            self.meta.insert(TARGET, to.to_string().as_bytes())?;
            self.meta.remove(DONE_UPTO)?;
            self.db.flush()?;
        }
        let start = self.meta.get(DONE_UPTO)?.map(|v| v.to_vec());
        let total = self.blobs.len()?;
        let mut done = 0usize;
        let mut since_mark = 0usize;
        let mut last_key: Option<Vec<u8>> = None;
        for item in self.blobs.iter() {
            let (key, value) = item?;
            done += 1;
            if start.as_deref().is_some_and(|s| key.as_slice() <= s) {
                report.resumed += 1;
                continue;
            }
            let rec: crate::record::BlobRecord = crate::record::decode("blobs", &value)?;
            let d = Digest::from_key(&key)
                .map(|(d, _)| d)
                .ok_or_else(|| Error::Corrupt {
                    tree: "blobs",
                    reason: "bad key".into(),
                })?;
            if dest.stat(&d)? != Some(rec.size) {
                copy_verified(self.backend.as_ref(), dest.as_ref(), &d, rec.size)?;
                report.copied += 1;
                report.bytes += rec.size;
                crate::fault::reached("migrate.after_copy", report.copied as u64);
            } else {
                // Bytes of the right size are there already (a shared bucket, or a run
                // killed after publishing but before its mark): re-hash them rather than
                // trust them, the same promise as for bytes copied now.
                check_digest(dest.as_ref(), &d, rec.size)?;
                report.resumed += 1;
            }
            last_key = Some(key.to_vec());
            since_mark += 1;
            if since_mark >= BATCH {
                self.mark_progress(dest.as_ref(), last_key.as_deref())?;
                since_mark = 0;
            }
            if let Some(p) = progress {
                p(done, total, report.bytes);
            }
        }
        self.mark_progress(dest.as_ref(), last_key.as_deref())?;
        // A put after the copy began added records the loop may have passed: none can,
        // since this process holds the store's lock and does nothing else meanwhile.
        // Switch: from now on the store reads and writes the new backend.
        let mut batch = crate::kv::Batch::default();
        batch.insert(b"blobs".as_slice(), to.to_string().as_bytes());
        batch.insert(CLEANUP, from.to_string().as_bytes());
        batch.remove(TARGET);
        batch.remove(DONE_UPTO);
        self.meta.apply_batch(batch)?;
        self.db.flush()?;
        let old = std::mem::replace(&mut self.backend, dest);
        report.removed = self.remove_old_copies(old.as_ref())?;
        Ok(report)
    }

    fn mark_progress(&self, dest: &dyn Backend, last: Option<&[u8]>) -> Result<()> {
        dest.sync()?;
        if let Some(k) = last {
            self.meta.insert(DONE_UPTO, k)?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// After the switch: remove the old backend's copy of every recorded blob (what it
    /// held with no record stays for that backend's own GC, or the operator).
    fn remove_old_copies(&self, old: &dyn Backend) -> Result<usize> {
        let mut n = 0;
        for item in self.records() {
            let (d, _) = item?;
            if old.stat(&d)?.is_some() {
                old.delete(&d)?;
                n += 1;
            }
        }
        old.sync()?;
        self.meta.remove(CLEANUP)?;
        self.db.flush()?;
        Ok(n)
    }
}

/// Stream `d` from `src` into `dest`, hashing on the way; publish only a verified copy.
fn copy_verified(src: &dyn Backend, dest: &dyn Backend, d: &Digest, size: u64) -> Result<()> {
    let unique = format!("{:016x}", rand::random::<u64>());
    let mut staged = dest.stage(d, size, &unique)?;
    let copied =
        read_verified(src, d, size, &mut |chunk| staged.write(chunk)).and_then(|()| staged.seal());
    match copied {
        Ok(()) => staged.publish(),
        Err(e) => {
            staged.abort();
            Err(e)
        }
    }
}

/// Re-hash `d` as `backend` holds it.
fn check_digest(backend: &dyn Backend, d: &Digest, size: u64) -> Result<()> {
    read_verified(backend, d, size, &mut |_| Ok(()))
}

/// Read all of `d` from `backend`, handing each chunk to `sink` once it passed the size
/// check; Ok only when the whole has the declared size and digest.
fn read_verified(
    backend: &dyn Backend,
    d: &Digest,
    size: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut v = Verifier::new(d, size);
    crate::backend::read_all(backend, d, &mut |chunk| {
        v.update(chunk).map_err(|e| verify_error(d, size, e))?;
        sink(chunk)
    })?;
    v.finish().map_err(|e| verify_error(d, size, e))
}

fn verify_error(d: &Digest, size: u64, e: sealift_oci::verify::VerifyError) -> Error {
    use sealift_oci::verify::VerifyError as V;
    match e {
        V::TooLong { .. } => Error::SizeMismatch {
            digest: d.clone(),
            expected: size,
            actual: size + 1,
            truncated: true,
        },
        V::TooShort { seen, .. } => Error::SizeMismatch {
            digest: d.clone(),
            expected: size,
            actual: seen,
            truncated: false,
        },
        V::Mismatch { expected, actual } => Error::DigestMismatch { expected, actual },
    }
}
