//! sealift-layout: OCI image layouts: directories and tarballs (plain, gzip, zstd), in and out of the store;
//! bundles of many images, selected by pattern, split into parts or made as a delta against
//! a site's inventory; Docker archives for `docker load`.
//!
//! This crate is the only owner of the layout format. [`format`] holds the format itself
//! (oci-layout, index.json, ref names, tar headers, atomic writes), [`compress`] the tarball
//! compressions, [`dir`] a layout directory read and written, [`tar_read`] a tarball read in
//! place and [`tar_write`] one written as a stream; [`import`] and [`export`] move images
//! between them and the store, and sealift-copy's layout transports are async adapters
//! over the same types.

pub mod compress;
pub mod dir;
pub mod docker_archive;
pub mod entry;
pub mod error;
pub mod export;
pub mod format;
pub mod image_list;
pub mod import;
pub mod inventory;
pub mod select;
pub mod split;
pub mod tar_read;
pub mod tar_write;

pub use dir::LayoutDir;
pub use error::LayoutError;
pub use export::{export, ExportOptions, ExportReport};
pub use format::Format;
pub use import::{
    import_path, import_reader, ImportOptions, ImportReport, ImportedImage, RefusedImage,
};
pub use inventory::Inventory;
pub use select::Selector;
pub use tar_read::TarLayout;
pub use tar_write::TarLayoutWriter;

/// Progress callback: bytes done, bytes total (0 when unknown).
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;
