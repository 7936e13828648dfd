//! A registry repository as a source and a sink, over [`sealift_registry::Registry`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest};

use super::{BlobStream, Root, Sink, Source, TransportError};
use sealift_registry::Registry;

/// A registry repository read as a source.
pub struct RegistrySource {
    reg: Registry,
    repo: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl RegistrySource {
    /// A source for `repo:tag` or `repo@digest` (the digest wins).
    pub fn new(
        reg: Registry,
        repo: String,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> RegistrySource {
        RegistrySource {
            reg,
            repo,
            tag,
            digest,
        }
    }
}

#[async_trait]
impl Source for RegistrySource {
    fn describe(&self) -> String {
        let mut s = format!("docker://{}/{}", self.reg.host(), self.repo);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let reference = match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let m = self.reg.manifest_get(&self.repo, &reference).await?;
        let descriptor = Descriptor::new(m.media_type, m.digest, m.bytes.len() as u64);
        Ok(Root {
            descriptor,
            bytes: m.bytes,
        })
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError> {
        let m = self
            .reg
            .manifest_get(&self.repo, &desc.digest.to_string())
            .await?;
        super::check_bytes(desc, &m.bytes)?;
        Ok(m.bytes)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        Ok(Box::new(
            self.reg
                .blob_get(&self.repo, &desc.digest, desc.size)
                .await?,
        ))
    }

    async fn blob_unhashed(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        Ok(Box::new(
            self.reg
                .blob_get_unhashed(&self.repo, &desc.digest, desc.size)
                .await?,
        ))
    }

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        Ok(self
            .reg
            .referrers(&self.repo, &subject.digest, None)
            .await?)
    }

    fn registry_repo(&self) -> Option<(String, String)> {
        Some((self.reg.host().to_string(), self.repo.clone()))
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        match self.reg.tags(&self.repo).await {
            Ok(t) => Ok(t),
            Err(sealift_registry::RegistryError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn resolve_tag(&self, tag: &str) -> Result<Root, TransportError> {
        let m = self.reg.manifest_get(&self.repo, tag).await?;
        Ok(Root {
            descriptor: Descriptor::new(m.media_type, m.digest, m.bytes.len() as u64),
            bytes: m.bytes,
        })
    }
}

/// A registry repository written as a sink.
pub struct RegistrySink {
    reg: Registry,
    repo: String,
    tag: Option<String>,
    digest: Option<Digest>,
    manifests: Mutex<HashMap<Digest, Vec<u8>>>,
}

impl RegistrySink {
    /// A sink that tags `tag` (or only pushes by digest).
    pub fn new(
        reg: Registry,
        repo: String,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> RegistrySink {
        RegistrySink {
            reg,
            repo,
            tag,
            digest,
            manifests: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Sink for RegistrySink {
    fn describe(&self) -> String {
        let mut s = format!("docker://{}/{}", self.reg.host(), self.repo);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        s
    }

    async fn current(&self) -> Result<Option<Digest>, TransportError> {
        let Some(t) = &self.tag else { return Ok(None) };
        Ok(self
            .reg
            .manifest_head(&self.repo, t)
            .await?
            .map(|h| h.digest))
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.reg.blob_head(&self.repo, &desc.digest).await? == Some(desc.size))
    }

    async fn put_blob(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        self.reg
            .blob_put(&self.repo, &desc.digest, desc.size, body)
            .await?;
        Ok(())
    }

    /// `blob_put` hashes the body as it reads it and cancels the upload before completing
    /// it on a wrong size or digest.
    fn hashes_blobs(&self) -> bool {
        true
    }

    async fn mount(
        &self,
        desc: &Descriptor,
        host: &str,
        repo: &str,
    ) -> Result<bool, TransportError> {
        if host != self.reg.host() || repo == self.repo {
            return Ok(false);
        }
        Ok(self.reg.blob_mount(&self.repo, repo, &desc.digest).await?)
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self
            .reg
            .manifest_head(&self.repo, &desc.digest.to_string())
            .await?
            .is_some())
    }

    async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &[u8],
        _sparse: bool,
    ) -> Result<(), TransportError> {
        super::check_bytes(desc, bytes)?;
        let got = self
            .reg
            .manifest_put(
                &self.repo,
                &desc.digest.to_string(),
                &desc.media_type,
                bytes,
            )
            .await?;
        if got != desc.digest {
            return Err(sealift_store::Error::DigestMismatch {
                expected: desc.digest.clone(),
                actual: got,
            }
            .into());
        }
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(desc.digest.clone(), bytes.to_vec());
        Ok(())
    }

    async fn tag(&self, root: &Descriptor) -> Result<(), TransportError> {
        let Some(t) = &self.tag else { return Ok(()) };
        if let Some(d) = &self.digest {
            if d != &root.digest {
                return Err(TransportError::Unsupported(format!(
                    "destination pins {d} but the source is {}",
                    root.digest
                )));
            }
        }
        self.tag_as(root, t).await
    }

    async fn tag_as(&self, root: &Descriptor, tag: &str) -> Result<(), TransportError> {
        let cached = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&root.digest)
            .cloned();
        let bytes = match cached {
            Some(b) => b,
            None => {
                self.reg
                    .manifest_get(&self.repo, &root.digest.to_string())
                    .await?
                    .bytes
            }
        };
        self.reg
            .manifest_put(&self.repo, tag, &root.media_type, &bytes)
            .await?;
        Ok(())
    }

    /// Registries with the referrers API list a pushed referrer by themselves; for the
    /// others (distribution 2.8) the `sha256-<hex>` tag's index is updated, as the OCI
    /// distribution spec's fallback asks of clients.
    async fn add_referrer(
        &self,
        referrer: &Descriptor,
        subject: &Descriptor,
    ) -> Result<(), TransportError> {
        let listed = self
            .reg
            .referrers(&self.repo, &subject.digest, None)
            .await?;
        if listed.iter().any(|d| d.digest == referrer.digest) {
            return Ok(());
        }
        let tag = sealift_registry::referrers_tag(&subject.digest);
        let mut index = match self.reg.manifest_get(&self.repo, &tag).await {
            Ok(m) => serde_json::from_slice::<serde_json::Value>(&m.bytes).map_err(|e| {
                TransportError::Unsupported(format!("{}:{tag} is not an index: {e}", self.repo))
            })?,
            Err(sealift_registry::RegistryError::NotFound { .. }) => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": sealift_oci::media_type::OCI_INDEX,
                "manifests": [],
            }),
            Err(e) => return Err(e.into()),
        };
        let mut entry = serde_json::json!({
            "mediaType": referrer.media_type,
            "digest": referrer.digest.to_string(),
            "size": referrer.size,
        });
        if let Some(a) = &referrer.artifact_type {
            entry["artifactType"] = serde_json::Value::String(a.clone());
        }
        if let Some(list) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) {
            list.push(entry);
        }
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| TransportError::Unsupported(format!("writing referrers index: {e}")))?;
        self.reg
            .manifest_put(&self.repo, &tag, sealift_oci::media_type::OCI_INDEX, &bytes)
            .await?;
        Ok(())
    }

    async fn finish(&self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Half the registry's request limit: a blob streamed from the same registry holds a
    /// request slot for its download while its upload needs another.
    fn parallelism(&self) -> usize {
        (self.reg.config().max_concurrent / 2).max(1)
    }
}
