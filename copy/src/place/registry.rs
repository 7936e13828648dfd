//! A registry as a place: the catalog, tag lists, manifest HEAD and DELETE, and the
//! transport's registry source and sink, every request through the pool's client for the
//! host. Opening asks nothing: a no-op sync costs only the requests it needs.

use std::sync::Arc;

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest};
use sealift_registry::{Registry, RegistryError};

use super::{Deleted, Head, Place, Reference, Repository};
use crate::clients::Clients;
use crate::transport::registry::{RegistrySink, RegistrySource};
use crate::transport::{Sink, Source, TransportError};

/// A registry host, its client taken from a shared pool when first needed (so a credentials
/// error fails what needed it, not the opening).
pub struct RegistryPlace {
    clients: Arc<Clients>,
    host: String,
}

impl RegistryPlace {
    /// The registry at `host` (`host[:port]`).
    pub fn new(clients: Arc<Clients>, host: &str) -> RegistryPlace {
        RegistryPlace {
            clients,
            host: host.to_string(),
        }
    }
}

#[async_trait]
impl Place for RegistryPlace {
    fn describe(&self) -> String {
        format!("docker://{}", self.host)
    }

    fn is_local(&self) -> bool {
        false
    }

    async fn catalog(&self) -> Result<Vec<String>, TransportError> {
        let reg = self.clients.get(&self.host)?;
        reg.catalog().await.map_err(|e| {
            TransportError::from(e).during(format!("listing the catalog of {}", self.host))
        })
    }

    fn repository(&self, name: &str) -> Arc<dyn Repository> {
        Arc::new(RegistryRepository {
            clients: self.clients.clone(),
            host: self.host.clone(),
            repo: name.to_string(),
        })
    }
}

/// One repository of a registry.
pub struct RegistryRepository {
    clients: Arc<Clients>,
    host: String,
    repo: String,
}

impl RegistryRepository {
    fn client(&self) -> Result<Registry, TransportError> {
        self.clients.get(&self.host)
    }
}

#[async_trait]
impl Repository for RegistryRepository {
    fn describe(&self) -> String {
        format!("docker://{}/{}", self.host, self.repo)
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        match self.client()?.tags(&self.repo).await {
            Ok(t) => Ok(t),
            Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(TransportError::from(e)
                .during(format!("listing tags of {}/{}", self.host, self.repo))),
        }
    }

    /// One HEAD (a GET where the registry sends no digest for a tag).
    async fn head(&self, tag: &str) -> Result<Option<Head>, TransportError> {
        Ok(self
            .client()?
            .manifest_head(&self.repo, tag)
            .await?
            .map(|h| Head {
                descriptor: Descriptor::new(h.media_type, h.digest, h.size),
                etag: h.etag,
            }))
    }

    /// `DELETE` of the manifest `digest` (the tag is not asked again first): registries
    /// delete by digest, taking every tag naming it along. Registries refusing deletes
    /// (distribution's default) answer with an error.
    async fn delete(&self, _tag: &str, digest: &Digest) -> Result<Deleted, TransportError> {
        Ok(
            match self.client()?.manifest_delete(&self.repo, digest).await? {
                true => Deleted::Removed,
                false => Deleted::Gone,
            },
        )
    }

    fn deletes_by_digest(&self) -> bool {
        true
    }

    async fn source(&self, at: &Reference) -> Result<Arc<dyn Source>, TransportError> {
        Ok(Arc::new(RegistrySource::new(
            self.client()?,
            self.repo.clone(),
            at.tag.clone(),
            at.digest.clone(),
        )))
    }

    async fn sink(&self, at: &Reference) -> Result<Arc<dyn Sink>, TransportError> {
        Ok(Arc::new(RegistrySink::new(
            self.client()?,
            self.repo.clone(),
            at.tag.clone(),
            at.digest.clone(),
        )))
    }
}
