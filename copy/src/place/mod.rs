//! Places images live, whole: a registry, the store, an OCI layout directory or tarball,
//! opened once and asked for repositories, their tags, the digest a tag names, deletion,
//! and the [`Source`] or [`Sink`] of one image. Sync jobs work through this interface only,
//! so they hold no backend switches of their own.
//!
//! One file per backend, the same names here as in `transport/` (`registry.rs`,
//! `store.rs`, `layout_dir.rs`, `layout_tar.rs`), as regclient's `scheme/reg` and
//! `scheme/ocidir` do; layouts' ref names (`repo:tag`, or a bare tag named after the
//! layout) are read in `refnames.rs`, shared by both layout backends.
//!
//! ```text
//! Place ──repository(name)──▶ Repository ──source(ref) / sink(ref)──▶ Source / Sink
//!   └─ catalog()                 └─ tags(), head(tag), delete(tag, digest)
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest, StoreRef};
use sealift_store::Store;

use crate::transport::{Sink, Source, TransportError};

pub mod layout_dir;
pub mod layout_tar;
pub mod refnames;
pub mod registry;
pub mod store;

pub use layout_dir::LayoutDirPlace;
pub use layout_tar::LayoutTarPlace;
pub use registry::RegistryPlace;
pub use store::StorePlace;

/// What a tag names now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Digest, size and media type of the manifest or index.
    pub descriptor: Descriptor,
    /// The registry's `ETag` for it, when it sent one.
    pub etag: Option<String>,
}

/// Which image of a repository a source reads or a sink writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reference {
    /// The tag (a sink points it at what it wrote).
    pub tag: Option<String>,
    /// The digest: a registry or store source reads exactly this, so a tag moving between
    /// a check and the copy does not change what is copied (layouts read by tag).
    pub digest: Option<Digest>,
}

impl Reference {
    /// A tag.
    pub fn tag(tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// A tag as it was when checked: its digest then.
    pub fn pinned(tag: &str, digest: Digest) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: Some(digest),
        }
    }
}

/// What [`Repository::delete`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Removed.
    Removed,
    /// Already gone.
    Gone,
    /// The tag names another digest now (someone else moved it): left in place.
    Moved(Digest),
}

/// How a place takes images.
pub enum Writes {
    /// Image by image through [`Repository::sink`].
    Images {
        /// Repositories must be written one at a time: they share a file (a layout's
        /// index.json, merged by each sink as it finishes).
        serial: bool,
    },
    /// All of a run's images at once, as one bundle of store images.
    Bundle(Arc<dyn Bundle>),
}

/// A place written as one bundle (a layout tarball): every image in one go, replacing the
/// last bundle atomically.
#[async_trait]
pub trait Bundle: Send + Sync {
    /// For messages.
    fn describe(&self) -> String;
    /// Whether a bundle is there now.
    fn exists(&self) -> bool;
    /// Write `images` of `store` (with their referrers when asked) as the bundle; returns
    /// the bytes of blobs written.
    async fn write(
        &self,
        store: &Arc<Store>,
        images: Vec<StoreRef>,
        referrers: bool,
    ) -> Result<u64, TransportError>;
}

/// A place holding repositories, opened once (by a job at its start) and shared.
#[async_trait]
pub trait Place: Send + Sync {
    /// For messages: `docker://host`, `store:`, `oci:PATH`, `oci-archive:PATH`.
    fn describe(&self) -> String;

    /// Whether asking is local and cheap (store, layouts): listing and HEADs cost no
    /// requests, so a job lists such a place even for an explicit tag list, and checks a
    /// destination tag still names what it wrote before skipping it. A registry is trusted
    /// to keep what was written, which is what makes a no-op run cost nothing there.
    fn is_local(&self) -> bool;

    /// The repositories the place holds, for places holding many (registry `_catalog`,
    /// store repositories, the `repo` of layout ref names).
    async fn catalog(&self) -> Result<Vec<String>, TransportError>;

    /// One repository (no I/O: a repository that does not exist has no tags).
    fn repository(&self, name: &str) -> Arc<dyn Repository>;

    /// How the place takes images.
    fn writes(&self) -> Writes {
        Writes::Images { serial: false }
    }
}

/// One repository of a place.
#[async_trait]
pub trait Repository: Send + Sync {
    /// For messages: `docker://host/repo`, `store:repo`, `oci:PATH:repo`,
    /// `oci-archive:PATH:repo` (an image is this, `:`, its tag).
    fn describe(&self) -> String;

    /// Every tag (a repository that does not exist has none).
    async fn tags(&self) -> Result<Vec<String>, TransportError>;

    /// What `tag` names now; `None` when there is no such tag.
    async fn head(&self, tag: &str) -> Result<Option<Head>, TransportError>;

    /// Remove `tag` if it still names `digest`. `Unsupported` where the place does not
    /// delete (layouts).
    async fn delete(&self, tag: &str, digest: &Digest) -> Result<Deleted, TransportError>;

    /// Whether deleting removes the manifest, and so every tag naming the same digest
    /// (registries delete by digest), rather than the one tag.
    fn deletes_by_digest(&self) -> bool {
        false
    }

    /// A source reading one image.
    async fn source(&self, at: &Reference) -> Result<Arc<dyn Source>, TransportError>;

    /// A sink writing one image (and tagging it, when `at` has a tag).
    async fn sink(&self, at: &Reference) -> Result<Arc<dyn Sink>, TransportError>;
}

/// The `Unsupported` error of a place that cannot do `what`.
pub(crate) fn unsupported(place: &str, what: &str) -> TransportError {
    TransportError::Unsupported(format!("{place}: {what}"))
}
