//! An OCI layout directory as a place: its repositories and tags are those of index.json's
//! ref names (see `refnames.rs`), read afresh on every question (the file is small, and a
//! destination's changes as each sink finishes). Writing goes one repository at a time:
//! every sink merges the same index.json. Layouts do not delete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest};

use super::{refnames, Deleted, Head, Place, Reference, Repository, Writes};
use crate::transport::layout_dir::{index_entries, LayoutDirSink, LayoutDirSource};
use crate::transport::{Sink, Source, TransportError};

/// A layout directory.
pub struct LayoutDirPlace {
    dir: PathBuf,
}

impl LayoutDirPlace {
    /// The layout at `dir` (created by the first sink when it does not exist).
    pub fn new(dir: PathBuf) -> LayoutDirPlace {
        LayoutDirPlace { dir }
    }
}

async fn entries(dir: &Path) -> Result<Vec<Descriptor>, TransportError> {
    index_entries(dir)
        .await
        .map_err(|e| e.during(format!("reading {}", dir.display())))
}

#[async_trait]
impl Place for LayoutDirPlace {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    fn is_local(&self) -> bool {
        true
    }

    async fn catalog(&self) -> Result<Vec<String>, TransportError> {
        let e = entries(&self.dir).await?;
        Ok(refnames::repositories(
            &e,
            &refnames::default_repo(&self.dir),
        ))
    }

    fn repository(&self, name: &str) -> Arc<dyn Repository> {
        Arc::new(LayoutDirRepository {
            dir: self.dir.clone(),
            name: name.to_string(),
            default_repo: refnames::default_repo(&self.dir),
        })
    }

    fn writes(&self) -> Writes {
        Writes::Images { serial: true }
    }
}

/// The images of one repository of a layout directory.
pub struct LayoutDirRepository {
    dir: PathBuf,
    name: String,
    default_repo: String,
}

#[async_trait]
impl Repository for LayoutDirRepository {
    fn describe(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.name)
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        let e = entries(&self.dir).await?;
        Ok(refnames::tags(&e, &self.default_repo, &self.name))
    }

    async fn head(&self, tag: &str) -> Result<Option<Head>, TransportError> {
        let e = entries(&self.dir).await?;
        Ok(refnames::head(&e, &self.default_repo, &self.name, tag))
    }

    async fn delete(&self, _tag: &str, _digest: &Digest) -> Result<Deleted, TransportError> {
        Err(refnames::no_delete(&self.describe()))
    }

    /// By the tag's ref name as written (a bare tag stays bare).
    async fn source(&self, at: &Reference) -> Result<Arc<dyn Source>, TransportError> {
        let e = entries(&self.dir).await?;
        let n = refnames::entry_for(&e, &self.default_repo, &self.name, at, &self.describe())?;
        Ok(Arc::new(LayoutDirSource::new(
            self.dir.clone(),
            Some(n.ref_name.to_string()),
        )))
    }

    /// Names its image `repo:tag` in index.json.
    async fn sink(&self, at: &Reference) -> Result<Arc<dyn Sink>, TransportError> {
        let name = at.tag.as_ref().map(|t| format!("{}:{t}", self.name));
        Ok(Arc::new(LayoutDirSink::new(self.dir.clone(), name)?))
    }
}
