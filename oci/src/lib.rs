//! sealift-oci: the OCI image model, with no I/O of its own.
//!
//! Digests and streaming hashers, media types, descriptors, manifest, index and image-config
//! views over exact bytes, platforms, references, DiffIDs and ChainIDs, layer compression,
//! and streaming verification against a descriptor. Every other sealift crate speaks these
//! types; this crate depends on none of them.
//!
//! ```
//! use sealift_oci::{Digest, ManifestView};
//! let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
//! let view = ManifestView::parse(bytes, None).unwrap();
//! assert!(view.children().is_empty());
//! assert!(Digest::sha256(bytes).to_string().starts_with("sha256:"));
//! ```

pub mod compression;
pub mod config;
pub mod diffid;
pub mod digest;
pub mod image_ref;
pub mod manifest;
pub mod media_type;
pub mod platform;
pub mod reference;
pub mod verify;

pub use config::ImageConfig;
pub use digest::{Algorithm, Digest};
pub use image_ref::ImageRef;
pub use manifest::{Descriptor, ManifestKind, ManifestView};
pub use platform::Platform;
pub use reference::{Repo, StoreRef, Tag};
