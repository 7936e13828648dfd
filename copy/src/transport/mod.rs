//! One interface for every place images live: the registry, the store, an OCI layout
//! directory and an OCI layout tarball. A copy is a walk of the manifest graph from a
//! [`Source`] to a [`Sink`] (see [`crate::copy`]).

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest};
use tokio::io::AsyncRead;

pub mod error;
pub mod layout_dir;
pub mod layout_tar;
mod open;
pub mod registry;
pub mod store;
pub mod verify;

pub use error::TransportError;
pub use open::{open_sink, open_source};

/// A blob body being read.
pub type BlobStream = Box<dyn AsyncRead + Send + Unpin>;

/// What a source's reference resolves to: the root manifest's descriptor and exact bytes.
#[derive(Clone, Debug)]
pub struct Root {
    /// Digest, size and media type of the root manifest or index.
    pub descriptor: Descriptor,
    /// Its exact bytes, verified against the digest.
    pub bytes: Vec<u8>,
}

/// Where images are read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// For messages.
    fn describe(&self) -> String;
    /// Resolve the reference to the root manifest.
    async fn resolve(&self) -> Result<Root, TransportError>;
    /// A manifest's exact bytes, verified against its descriptor.
    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError>;
    /// A blob's bytes as a stream that fails if they do not match the descriptor.
    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError>;
    /// A blob's bytes for a sink that checks the size and digest of every byte itself
    /// ([`Sink::hashes_blobs`]): the source may skip its own digest check, so each byte is
    /// hashed once on its way. The engine asks for this only when the sink says it hashes;
    /// the default is [`Source::blob`], checked.
    async fn blob_unhashed(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        self.blob(desc).await
    }
    /// Manifests whose subject is `subject` (empty where the source cannot tell).
    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError>;
    /// Tags of the source repository (registries; layouts: the ref names of the selected
    /// entry's repository), for cosign's `sha256-<hex>.sig` style tags.
    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        Ok(Vec::new())
    }
    /// Resolve another tag of the same repository.
    async fn resolve_tag(&self, tag: &str) -> Result<Root, TransportError> {
        Err(TransportError::NotFound(format!(
            "{tag} in {}",
            self.describe()
        )))
    }
    /// `(host, repo)` when this is a registry, so a sink on the same registry can mount.
    fn registry_repo(&self) -> Option<(String, String)> {
        None
    }
}

/// Where images are written to.
#[async_trait]
pub trait Sink: Send + Sync {
    /// For messages.
    fn describe(&self) -> String;
    /// The digest the destination reference points at now, if any.
    async fn current(&self) -> Result<Option<Digest>, TransportError>;
    /// Whether the destination has this blob (and, for the store, holds it for this copy).
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError>;
    /// Write a blob.
    async fn put_blob(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError>;
    /// Whether [`Sink::put_blob`] hashes every byte it takes and refuses a body of the wrong
    /// size or digest before anything becomes visible, whatever stream it is given. Only
    /// then may the engine hand it [`Source::blob_unhashed`]'s stream; a sink that stores
    /// or forwards bytes without hashing them must keep the default, `false`.
    fn hashes_blobs(&self) -> bool {
        false
    }
    /// Try a cross-repository mount from `repo` on `host`; false when not possible.
    async fn mount(
        &self,
        _desc: &Descriptor,
        _host: &str,
        _repo: &str,
    ) -> Result<bool, TransportError> {
        Ok(false)
    }
    /// Whether the destination has this manifest.
    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool, TransportError>;
    /// Write a manifest's exact bytes. `sparse`: an index whose entries were filtered.
    async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &[u8],
        sparse: bool,
    ) -> Result<(), TransportError>;
    /// Point the destination reference at `root` (last, after everything is written).
    async fn tag(&self, root: &Descriptor) -> Result<(), TransportError>;
    /// Point another tag of the destination repository at `root` (already written): cosign
    /// signature and attestation tags travel this way.
    async fn tag_as(&self, _root: &Descriptor, _tag: &str) -> Result<(), TransportError> {
        Ok(())
    }
    /// Record that `referrer` (already written) refers to `subject`, where the destination
    /// needs more than the manifest itself: layouts list it in index.json; registries
    /// without the referrers API get the `sha256-<hex>` fallback tag.
    async fn add_referrer(
        &self,
        _referrer: &Descriptor,
        _subject: &Descriptor,
    ) -> Result<(), TransportError> {
        Ok(())
    }
    /// Keep the signature policy's verdict on the image about to be tagged (the store
    /// records it in its `state` tree; other destinations have nowhere to keep it).
    async fn record_verdict(
        &self,
        _verdict: &sealift_trust::Verdict,
    ) -> Result<(), TransportError> {
        Ok(())
    }
    /// Finish writing (tarballs are completed and renamed; layouts write index.json).
    async fn finish(&self) -> Result<(), TransportError>;
    /// How many blob transfers may run at once.
    fn parallelism(&self) -> usize {
        6
    }
}

pub use crate::clients::OpenOptions;

/// Read a whole manifest-sized stream, refusing more than the 4 MiB cap.
pub(crate) async fn read_capped(
    mut r: impl AsyncRead + Unpin,
    what: &str,
) -> Result<Vec<u8>, TransportError> {
    use tokio::io::AsyncReadExt;
    let cap = sealift_oci::manifest::MAX_MANIFEST_SIZE as u64;
    let mut buf = Vec::new();
    (&mut r)
        .take(cap + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| TransportError::Io {
            what: what.to_string(),
            source: e,
        })?;
    if buf.len() as u64 > cap {
        return Err(TransportError::TooLarge(what.to_string()));
    }
    Ok(buf)
}

/// Check bytes against a descriptor.
pub(crate) fn check_bytes(desc: &Descriptor, bytes: &[u8]) -> Result<(), TransportError> {
    if bytes.len() as u64 != desc.size {
        return Err(TransportError::Store(sealift_store::Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: bytes.len() as u64,
            truncated: false,
        }));
    }
    let actual = Digest::of(desc.digest.algorithm(), bytes);
    if actual != desc.digest {
        return Err(TransportError::Store(
            sealift_store::Error::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            },
        ));
    }
    Ok(())
}
