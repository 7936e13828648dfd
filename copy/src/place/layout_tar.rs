//! An OCI layout tarball as a place. Read: the tarball is scanned once, on the first
//! question, and every repository, head and source of the place uses that one scan.
//! Written: as one bundle of store images (`sealift_layout::export`, which also writes
//! gzip and zstd tarballs and a referrer's unnamed index.json entries), not image by image.
//! Tarballs do not delete.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest, StoreRef};
use sealift_store::Store;
use tokio::sync::OnceCell;

use super::{refnames, unsupported, Bundle, Deleted, Head, Place, Reference, Repository, Writes};
use crate::transport::layout_tar::LayoutTarSource;
use crate::transport::{BlobStream, Root, Sink, Source, TransportError};

/// The tarball and its scan, shared by the place and its repositories.
struct Archive {
    path: PathBuf,
    default_repo: String,
    scan: OnceCell<Arc<LayoutTarSource>>,
}

impl Archive {
    /// The scan, made on first use (on a blocking thread: it reads every tar header). A
    /// failed scan is not kept: the next question tries again.
    async fn scanned(&self) -> Result<&Arc<LayoutTarSource>, TransportError> {
        self.scan
            .get_or_try_init(|| async {
                let p = self.path.clone();
                let s = tokio::task::spawn_blocking(move || LayoutTarSource::open(p, None))
                    .await?
                    .map_err(|e| e.during(format!("reading {}", self.path.display())))?;
                Ok(Arc::new(s))
            })
            .await
    }

    fn describe(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }
}

/// A layout tarball.
pub struct LayoutTarPlace {
    archive: Arc<Archive>,
}

impl LayoutTarPlace {
    /// The tarball at `path` (nothing is read until asked).
    pub fn new(path: PathBuf) -> LayoutTarPlace {
        LayoutTarPlace {
            archive: Arc::new(Archive {
                default_repo: refnames::default_repo(&path),
                path,
                scan: OnceCell::new(),
            }),
        }
    }
}

#[async_trait]
impl Place for LayoutTarPlace {
    fn describe(&self) -> String {
        self.archive.describe()
    }

    fn is_local(&self) -> bool {
        true
    }

    async fn catalog(&self) -> Result<Vec<String>, TransportError> {
        let s = self.archive.scanned().await?;
        Ok(refnames::repositories(
            s.entries(),
            &self.archive.default_repo,
        ))
    }

    fn repository(&self, name: &str) -> Arc<dyn Repository> {
        Arc::new(LayoutTarRepository {
            archive: self.archive.clone(),
            name: name.to_string(),
        })
    }

    fn writes(&self) -> Writes {
        Writes::Bundle(Arc::new(TarBundle {
            path: self.archive.path.clone(),
        }))
    }
}

/// The images of one repository of a layout tarball.
pub struct LayoutTarRepository {
    archive: Arc<Archive>,
    name: String,
}

#[async_trait]
impl Repository for LayoutTarRepository {
    fn describe(&self) -> String {
        format!("{}:{}", self.archive.describe(), self.name)
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        let s = self.archive.scanned().await?;
        Ok(refnames::tags(
            s.entries(),
            &self.archive.default_repo,
            &self.name,
        ))
    }

    async fn head(&self, tag: &str) -> Result<Option<Head>, TransportError> {
        let s = self.archive.scanned().await?;
        let repo = &self.archive.default_repo;
        Ok(refnames::head(s.entries(), repo, &self.name, tag))
    }

    async fn delete(&self, _tag: &str, _digest: &Digest) -> Result<Deleted, TransportError> {
        Err(refnames::no_delete(&self.describe()))
    }

    /// An image of the one scan (no new scan per image).
    async fn source(&self, at: &Reference) -> Result<Arc<dyn Source>, TransportError> {
        let s = self.archive.scanned().await?;
        let repo = &self.archive.default_repo;
        let n = refnames::entry_for(s.entries(), repo, &self.name, at, &self.describe())?;
        Ok(Arc::new(TarImage {
            archive: s.clone(),
            root: refnames::root(n.entry),
        }))
    }

    async fn sink(&self, _at: &Reference) -> Result<Arc<dyn Sink>, TransportError> {
        Err(unsupported(
            &self.describe(),
            "tarballs are written as bundles",
        ))
    }
}

/// One image of a scanned tarball: its root is the entry found by ref name; manifests,
/// blobs and referrers are the scan's, which do not depend on the image.
struct TarImage {
    archive: Arc<LayoutTarSource>,
    root: Descriptor,
}

#[async_trait]
impl Source for TarImage {
    fn describe(&self) -> String {
        self.archive.describe()
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let bytes = self.archive.manifest(&self.root).await?;
        Ok(Root {
            descriptor: self.root.clone(),
            bytes,
        })
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError> {
        self.archive.manifest(desc).await
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        self.archive.blob(desc).await
    }

    async fn blob_unhashed(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        self.archive.blob_unhashed(desc).await
    }

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        self.archive.referrers(subject).await
    }
}

/// Writing the tarball as one bundle.
struct TarBundle {
    path: PathBuf,
}

#[async_trait]
impl Bundle for TarBundle {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }

    fn exists(&self) -> bool {
        self.path.exists()
    }

    async fn write(
        &self,
        store: &Arc<Store>,
        images: Vec<StoreRef>,
        referrers: bool,
    ) -> Result<u64, TransportError> {
        let writing = format!("writing {}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| {
                TransportError::Io {
                    what: format!("creating {}", dir.display()),
                    source,
                }
                .during(writing.clone())
            })?;
        }
        let (s, p) = (store.clone(), self.path.clone());
        let r = tokio::task::spawn_blocking(move || {
            sealift_layout::export::export(
                &s,
                &images,
                &p,
                &sealift_layout::export::ExportOptions {
                    referrers,
                    ..Default::default()
                },
            )
        })
        .await?;
        r.map(|e| e.bytes)
            .map_err(|e| TransportError::from(e).during(writing))
    }
}
