//! The store as a source and a sink. Store calls are blocking (files, metadata): they run on
//! tokio's blocking pool.

use std::sync::Arc;

use async_trait::async_trait;
use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::{Descriptor, Digest, StoreRef};
use sealift_store::{BlobReader, Lease, ManifestOptions, Store};
use tokio_util::io::SyncIoBridge;

use super::{BlobStream, Root, Sink, Source, TransportError};

fn descriptor(store: &Store, d: &Digest) -> Result<Descriptor, TransportError> {
    let rec = store
        .record(d)?
        .ok_or_else(|| sealift_store::Error::NotFound(d.clone()))?;
    let mut desc = Descriptor::new(rec.media_type, d.clone(), rec.size);
    if rec.subject.is_some() {
        desc.artifact_type = rec.artifact_type;
    }
    Ok(desc)
}

/// Images in the store, by `repo:tag` or `repo@digest`.
pub struct StoreSource {
    store: Arc<Store>,
    reference: StoreRef,
}

impl StoreSource {
    /// A source for `reference`.
    pub fn new(store: Arc<Store>, reference: StoreRef) -> StoreSource {
        StoreSource { store, reference }
    }
}

#[async_trait]
impl Source for StoreSource {
    fn describe(&self) -> String {
        format!("store:{}", self.reference)
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let store = self.store.clone();
        let r = self.reference.clone();
        tokio::task::spawn_blocking(move || {
            let d = store.resolve(&r)?;
            let descriptor = descriptor(&store, &d)?;
            let bytes = store.read_small(&d, MAX_MANIFEST_SIZE as u64)?;
            Ok(Root { descriptor, bytes })
        })
        .await?
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError> {
        let store = self.store.clone();
        let d = desc.digest.clone();
        let bytes =
            tokio::task::spawn_blocking(move || store.read_small(&d, MAX_MANIFEST_SIZE as u64))
                .await??;
        super::check_bytes(desc, &bytes)?;
        Ok(bytes)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        let store = self.store.clone();
        let d = desc.digest.clone();
        let r = tokio::task::spawn_blocking(move || store.open_blob(&d)).await??;
        Ok(match r {
            BlobReader::File(f) => Box::new(tokio::fs::File::from_std(f)),
            BlobReader::Stream(s) => async_reader(s),
        })
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        let store = self.store.clone();
        let repo = self.reference.repo.clone();
        tokio::task::spawn_blocking(move || {
            Ok(store
                .tags()?
                .into_iter()
                .filter(|t| t.repo == repo)
                .map(|t| t.tag.to_string())
                .collect())
        })
        .await?
    }

    async fn resolve_tag(&self, tag: &str) -> Result<Root, TransportError> {
        let tag: sealift_oci::Tag = tag.parse().map_err(sealift_store::Error::from)?;
        StoreSource::new(
            self.store.clone(),
            StoreRef::tagged(self.reference.repo.clone(), tag),
        )
        .resolve()
        .await
    }

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        let store = self.store.clone();
        let d = subject.digest.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for r in store.referrers(&d)? {
                if store.record(&r)?.is_some() {
                    out.push(descriptor(&store, &r)?);
                }
            }
            Ok(out)
        })
        .await?
    }
}

/// The store as a destination: everything written is held by one lease until the tag is
/// set, so GC never takes half a copy, and a killed copy's blobs stay for a resume until GC.
pub struct StoreSink {
    store: Arc<Store>,
    reference: StoreRef,
    lease: Lease,
}

impl StoreSink {
    /// A sink tagging `reference` when done.
    pub fn new(store: Arc<Store>, reference: StoreRef) -> Result<StoreSink, TransportError> {
        let lease = store.lease_detached(&format!("copy to {reference}"), None)?;
        Ok(StoreSink {
            store,
            reference,
            lease,
        })
    }

    /// Like [`StoreSink::new`], with a lease that outlives the process for `ttl`: a sync
    /// killed mid-copy finds what it wrote still there (GC spares it) when it resumes.
    pub fn with_lease_ttl(
        store: Arc<Store>,
        reference: StoreRef,
        ttl: std::time::Duration,
    ) -> Result<StoreSink, TransportError> {
        let lease = store.lease_detached(&format!("sync to {reference}"), Some(ttl))?;
        Ok(StoreSink {
            store,
            reference,
            lease,
        })
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        let _ = self.store.release(self.lease);
    }
}

#[async_trait]
impl Sink for StoreSink {
    fn describe(&self) -> String {
        format!("store:{}", self.reference)
    }

    async fn record_verdict(&self, verdict: &sealift_trust::Verdict) -> Result<(), TransportError> {
        let store = self.store.clone();
        let v = verdict.clone();
        tokio::task::spawn_blocking(move || {
            store.state_put(sealift_trust::STATE_NAMESPACE, v.image.as_bytes(), &v)?;
            store.state_flush()?;
            Ok(())
        })
        .await?
    }

    async fn current(&self) -> Result<Option<Digest>, TransportError> {
        let store = self.store.clone();
        let r = self.reference.clone();
        tokio::task::spawn_blocking(move || match store.resolve(&r) {
            Ok(d) => Ok(Some(d)),
            Err(sealift_store::Error::UnknownRef(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await?
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        let store = self.store.clone();
        let (lease, desc) = (self.lease, desc.clone());
        // On object storage a blob already in the bucket (a replica's writer put it there)
        // is adopted after a size check instead of being copied again.
        let rec = tokio::task::spawn_blocking(move || {
            store.hold_or_adopt(&lease, &desc.digest, desc.size, &desc.media_type)
        })
        .await??;
        Ok(rec.is_some())
    }

    async fn put_blob(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        let store = self.store.clone();
        let (lease, desc) = (self.lease, desc.clone());
        tokio::task::spawn_blocking(move || {
            let mut reader = SyncIoBridge::new(body);
            store.put_blob(
                &lease,
                &desc.digest,
                desc.size,
                &desc.media_type,
                &mut reader,
            )
        })
        .await??;
        Ok(())
    }

    /// The store's ingest hashes every byte while staging and publishes nothing that does
    /// not match (there is no unverified put).
    fn hashes_blobs(&self) -> bool {
        true
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        let store = self.store.clone();
        let (lease, d) = (self.lease, desc.digest.clone());
        let rec = tokio::task::spawn_blocking(move || store.hold(&lease, &d)).await??;
        Ok(rec.is_some_and(|r| r.manifest))
    }

    async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &[u8],
        sparse: bool,
    ) -> Result<(), TransportError> {
        let store = self.store.clone();
        let (lease, desc, bytes) = (self.lease, desc.clone(), bytes.to_vec());
        tokio::task::spawn_blocking(move || {
            store.put_manifest(
                &lease,
                &bytes,
                ManifestOptions {
                    expected: Some(&desc.digest),
                    media_type: Some(&desc.media_type),
                    sparse,
                },
            )
        })
        .await??;
        Ok(())
    }

    async fn tag(&self, root: &Descriptor) -> Result<(), TransportError> {
        let store = self.store.clone();
        let (r, d) = (self.reference.clone(), root.digest.clone());
        tokio::task::spawn_blocking(move || match &r.tag {
            Some(t) => store.set_tag(&r.repo, t, &d),
            None => store.pin(&d),
        })
        .await??;
        Ok(())
    }

    async fn tag_as(&self, root: &Descriptor, tag: &str) -> Result<(), TransportError> {
        let store = self.store.clone();
        let repo = self.reference.repo.clone();
        let d = root.digest.clone();
        let tag: sealift_oci::Tag = tag.parse().map_err(sealift_store::Error::from)?;
        tokio::task::spawn_blocking(move || store.set_tag(&repo, &tag, &d)).await??;
        Ok(())
    }

    async fn finish(&self) -> Result<(), TransportError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        Ok(())
    }
}

/// A blocking reader (an object store's stream) as an async one: a blocking-pool thread
/// pumps it into a bounded pipe, so memory stays at the pipe's size and the reader's
/// errors reach the consumer as a failed read.
fn async_reader(mut r: Box<dyn std::io::Read + Send>) -> BlobStream {
    use tokio::io::AsyncWriteExt;
    const PIPE: usize = 1 << 20;
    let (rx, mut tx) = tokio::io::duplex(PIPE);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if rt.block_on(tx.write_all(&buf[..n])).is_err() {
                        // The consumer went away.
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Dropping the writer early makes the consumer see a short stream,
                    // which the copy's size check reports.
                    tracing::warn!("reading a stored blob: {e}");
                    return;
                }
            }
        }
        let _ = rt.block_on(tx.shutdown());
    });
    Box::new(rx)
}
