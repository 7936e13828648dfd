//! sealift-layout: OCI image layouts: directories and tarballs (plain, gzip, zstd), in and out of the store;
//! bundles of many images, selected by pattern, split into parts or made as a delta against
//! a site's inventory; Docker archives for `docker load`.

pub mod docker_archive;
pub mod entry;
pub mod error;
pub mod export;
pub mod import;
pub mod inventory;
pub mod select;
pub mod split;

pub use error::LayoutError;
pub use export::{export, ExportOptions, ExportReport, Format};
pub use import::{import_path, import_reader, ImportOptions, ImportReport, ImportedImage};
pub use inventory::Inventory;
pub use select::Selector;

/// Progress callback: bytes done, bytes total (0 when unknown).
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;
