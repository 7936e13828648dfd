//! The store as a place: repositories are those of its tags; a tag's head is a local
//! lookup; deleting removes the one tag (GC frees what nothing names any more). Store calls
//! are blocking (metadata, files): they run on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest, Repo, StoreRef, Tag};
use sealift_store::Store;

use super::{Deleted, Head, Place, Reference, Repository};
use crate::transport::store::{StoreSink, StoreSource};
use crate::transport::{Sink, Source, TransportError};

/// The store, shared with the rest of the process (one process owns it).
pub struct StorePlace {
    store: Arc<Store>,
    lease_ttl: Option<Duration>,
}

impl StorePlace {
    /// The store; sinks hold what they write under a lease that ends with the process.
    pub fn new(store: Arc<Store>) -> StorePlace {
        StorePlace {
            store,
            lease_ttl: None,
        }
    }

    /// Sinks' leases outlive the process for `ttl`: a sync killed mid-copy finds what it
    /// wrote still there (GC spares it) when it resumes.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> StorePlace {
        self.lease_ttl = Some(ttl);
        self
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TransportError> + Send + 'static,
) -> Result<T, TransportError> {
    tokio::task::spawn_blocking(f).await?
}

#[async_trait]
impl Place for StorePlace {
    fn describe(&self) -> String {
        "store:".into()
    }

    fn is_local(&self) -> bool {
        true
    }

    async fn catalog(&self) -> Result<Vec<String>, TransportError> {
        let store = self.store.clone();
        blocking(move || {
            let mut repos: Vec<String> = store
                .tags()?
                .into_iter()
                .map(|t| t.repo.as_str().to_string())
                .collect();
            repos.sort();
            repos.dedup();
            Ok(repos)
        })
        .await
    }

    fn repository(&self, name: &str) -> Arc<dyn Repository> {
        Arc::new(StoreRepository {
            store: self.store.clone(),
            name: name.to_string(),
            lease_ttl: self.lease_ttl,
        })
    }
}

/// One repository of the store.
pub struct StoreRepository {
    store: Arc<Store>,
    name: String,
    lease_ttl: Option<Duration>,
}

impl StoreRepository {
    fn repo(&self) -> Result<Repo, TransportError> {
        Ok(self.name.parse().map_err(sealift_store::Error::from)?)
    }

    fn tagged(&self, tag: &str) -> Result<StoreRef, TransportError> {
        let t: Tag = tag.parse().map_err(sealift_store::Error::from)?;
        Ok(StoreRef::tagged(self.repo()?, t))
    }

    /// `repo:tag`, `repo@digest` or `repo:tag@digest` (the digest wins in lookups).
    fn reference(&self, at: &Reference) -> Result<StoreRef, TransportError> {
        let mut r = match &at.tag {
            Some(t) => self.tagged(t)?,
            None => StoreRef {
                repo: self.repo()?,
                tag: None,
                digest: None,
            },
        };
        r.digest = at.digest.clone();
        Ok(r)
    }
}

#[async_trait]
impl Repository for StoreRepository {
    fn describe(&self) -> String {
        format!("store:{}", self.name)
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        let (store, name) = (self.store.clone(), self.name.clone());
        blocking(move || {
            Ok(store
                .tags()?
                .into_iter()
                .filter(|t| t.repo.as_str() == name)
                .map(|t| t.tag.as_str().to_string())
                .collect())
        })
        .await
    }

    async fn head(&self, tag: &str) -> Result<Option<Head>, TransportError> {
        let (store, r) = (self.store.clone(), self.tagged(tag)?);
        blocking(move || {
            let d = match store.resolve(&r) {
                Ok(d) => d,
                Err(sealift_store::Error::UnknownRef(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let rec = store
                .record(&d)?
                .ok_or(sealift_store::Error::NotFound(d.clone()))?;
            Ok(Some(Head {
                descriptor: Descriptor::new(rec.media_type, d, rec.size),
                etag: None,
            }))
        })
        .await
    }

    async fn delete(&self, tag: &str, digest: &Digest) -> Result<Deleted, TransportError> {
        let (store, r, want) = (self.store.clone(), self.tagged(tag)?, digest.clone());
        blocking(move || match store.resolve(&r) {
            Ok(d) if d == want => {
                if let Some(t) = &r.tag {
                    store.remove_tag(&r.repo, t)?;
                }
                Ok(Deleted::Removed)
            }
            Ok(d) => Ok(Deleted::Moved(d)),
            Err(sealift_store::Error::UnknownRef(_)) => Ok(Deleted::Gone),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn source(&self, at: &Reference) -> Result<Arc<dyn Source>, TransportError> {
        Ok(Arc::new(StoreSource::new(
            self.store.clone(),
            self.reference(at)?,
        )))
    }

    async fn sink(&self, at: &Reference) -> Result<Arc<dyn Sink>, TransportError> {
        // The sink's reference is the tag alone: its digest would win in `current`'s lookup.
        let r = match &at.tag {
            Some(t) => self.tagged(t)?,
            None => self.reference(at)?,
        };
        Ok(Arc::new(match self.lease_ttl {
            Some(ttl) => StoreSink::with_lease_ttl(self.store.clone(), r, ttl)?,
            None => StoreSink::new(self.store.clone(), r)?,
        }))
    }
}
