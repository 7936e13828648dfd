//! Blobs: records, holds, reading, and ingest (stream to `ingest/`, verify, fsync, rename,
//! then commit the record, and a manifest's edges, in one transaction).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sled::Transactional;

use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::record::{self, edge_key, now, role_code, BlobRecord, EdgeRecord, IngestRecord};
use crate::store::Store;
use crate::tx::{abort, link_child, tx_decode};
use sealift_oci::digest::{Digest, Hasher};
use sealift_oci::manifest::{ManifestView, Role};

const COPY_BUF: usize = 1024 * 1024;

/// What a blob put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The bytes were read, verified and stored.
    Written,
    /// The store had it already; the reader was not touched.
    Present,
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing directory", dir))
}

impl Store {
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

    pub(crate) fn ingest_to_temp(
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
    pub(crate) fn commit(
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
